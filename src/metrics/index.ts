/**
 * Prometheus endpoint. Every l2tp_* value is read from the data plane's shared counters when
 * Prometheus scrapes; nothing is incremented through prom-client on the hot path. Metric
 * families are custom collectors (one pass over the sessions per family, no label hashing), so a
 * scrape of 10,000 sessions stays cheap.
 */
import fs from 'node:fs';
import http from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import client from 'prom-client';
import {
  SESSION_COUNTERS, SESSION_ROW_WIDTH, TUNNEL_COUNTERS, TUNNEL_DROPS_FAMILY, TUNNEL_ROW_WIDTH, type CounterDef,
} from '../dataplane/counters.js';

/** Liveness of a running tunnel or session (daemon/liveness.ts), as the gauges show it. */
export interface MetricLiveness {
  /** 1 up, 0 down. */
  up: number;
  /** Verdict changes since it started. */
  transitions: number;
  /** Kinds of mismatch the diagnostics currently report (a bounded set: diagnose.ts DiagnosticKind). */
  mismatches: readonly string[];
}

export interface MetricsSource {
  /** Running sessions with their counter rows. */
  metricSessions(): Array<{ tunnel_id: number; session_id: number; interface: string; slot: number } & MetricLiveness>;
  /** Running tunnels with their counter rows; rtt_ms when Hello measured one. */
  metricTunnels(): Array<{ tunnel_id: number; slot: number; rtt_ms?: number } & MetricLiveness>;
  sessionCounters: Float64Array;
  tunnelCounters: Float64Array;
  /** Drops on shared raw IP sockets that match no tunnel: the host row of the tunnel table. */
  hostRow: number;
}

type Sample = { labels: Record<string, string | number>; value: number; sharedLabels: typeof NO_SHARED_LABELS };
type MetricSession = ReturnType<MetricsSource['metricSessions']>[number];
type MetricTunnel = ReturnType<MetricsSource['metricTunnels']>[number];

/**
 * The running tunnels and sessions, read from the source once per scrape and shared by every
 * family. Outside a scrape (e.g. registry.getMetricsAsJSON()) each read goes to the source.
 */
class ScrapeSnapshot {
  private current: { tunnels: MetricTunnel[]; sessions: MetricSession[] } | undefined;
  constructor(private readonly src: MetricsSource) {}

  async during<R>(fn: () => Promise<R>): Promise<R> {
    const snap = { tunnels: this.src.metricTunnels(), sessions: this.src.metricSessions() };
    this.current = snap;
    try {
      return await fn();
    } finally {
      if (this.current === snap) this.current = undefined;
    }
  }

  tunnels(): MetricTunnel[] { return this.current?.tunnels ?? this.src.metricTunnels(); }
  sessions(): MetricSession[] { return this.current?.sessions ?? this.src.metricSessions(); }
}

/**
 * The shared labels of every sample. prom-client caches the text of a sample's shared labels in a
 * WeakMap by object: a sample without them gets a new `{}` and a new entry, some 6000 per scrape
 * at 250 tunnels (one daemon profile showed 48 ms in that cache at once).
 */
const NO_SHARED_LABELS = Object.freeze({});

const sample = (labels: Sample['labels'], value: number): Sample => ({ labels, value, sharedLabels: NO_SHARED_LABELS });

function family(name: string, help: string, type: 'counter' | 'gauge', values: () => Sample[]): client.Metric {
  return {
    name, help, type, aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => undefined,
  } as unknown as client.Metric;
}

/** Tunnel families: one per counter, except the drops, which share one family labelled by reason. */
const TUNNEL_FAMILIES = TUNNEL_COUNTERS.map((c, field) => ({ c, field })).filter(({ c }) => c.reason === undefined);
const DROP_REASONS = TUNNEL_COUNTERS.map((c, field) => ({ reason: c.reason, field }))
  .filter((d): d is { reason: string; field: number } => d.reason !== undefined);

/**
 * A scrape renders for about this long (ms) before it lets other work run: long enough that a
 * scrape of unchanged lines, mostly copies, takes few turns of a busy event loop, short enough
 * that the API is not held up. Looked at every RENDER_CHECK lines.
 */
const RENDER_SLICE_MS = 8;
const RENDER_CHECK = 512;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** One family's text as the last scrape wrote it: where each session's line ends, and its value. */
interface FamilyText {
  block: Block;
  /** ends[i]: the offset just past the line of the scrape's session i; its line starts at ends[i - 1] (the first after the head). */
  ends: Int32Array;
  headLength: number;
  values: Float64Array;
}

/**
 * The per-session families (about 20 samples per session) are rendered here rather than through
 * prom-client's formatter, which costs about 2 us per sample (300 ms for 10,000 sessions). Each
 * family's text is kept from the last scrape with where each session's line lies: a scrape copies
 * the runs of lines whose session and value are as before (most of ten thousand) as bytes, and
 * formats only the lines that changed. Joining 200,000 line strings and encoding the 20 MB
 * result took most of a scrape and made most of its garbage.
 */
class SessionFamilies {
  private readonly labelCache: Array<{ tid: number; sid: number; ifname: string; text: string; bytes: Buffer } | undefined> = [];
  /** What the last scrape to finish wrote: its sessions (by label text, unique per session) and each family's text. */
  private last: { labels: string[]; families: FamilyText[] } = { labels: [], families: [] };
  private readonly pool = new BlockPool();
  constructor(private readonly src: MetricsSource, private readonly snapshot: ScrapeSnapshot) {}

  /** A session's label set, as text and as the bytes a line is made of. */
  private labels(s: MetricSession): { text: string; bytes: Buffer } {
    const c = this.labelCache[s.slot];
    if (c && c.tid === s.tunnel_id && c.sid === s.session_id && c.ifname === s.interface) return c;
    const text = `{tunnel_id="${s.tunnel_id}",session_id="${s.session_id}",interface="${escapeLabel(s.interface)}"}`;
    const entry = { tid: s.tunnel_id, sid: s.session_id, ifname: s.interface, text, bytes: Buffer.from(text) };
    this.labelCache[s.slot] = entry;
    return entry;
  }

  /**
   * The families as bytes, a buffer each, until `done` is called. Rendered in slices of
   * RENDER_SLICE_MS with a turn of the event loop between them, so that a scrape of ten thousand
   * sessions does not hold up the API.
   */
  async render(): Promise<ScrapeBytes> {
    const sessions = this.snapshot.sessions();
    const labelSets = sessions.map((s) => this.labels(s));
    const labels = labelSets.map((l) => l.text);
    const n = sessions.length;
    // The counter rows as they are now: between the steps a deleted session's slot can be taken
    // by another, whose counters must not appear under the first one's labels.
    const ctr = new Float64Array(n * SESSION_ROW_WIDTH);
    sessions.forEach((s, i) => ctr.set(this.src.sessionCounters.subarray(s.slot * SESSION_ROW_WIDTH, (s.slot + 1) * SESSION_ROW_WIDTH), i * SESSION_ROW_WIDTH));
    // Where each session was in the last scrape (-1: new); that scrape's texts, even if another finishes meanwhile.
    const last = this.last;
    for (const f of last.families) this.pool.hold(f.block);
    const lastAt = new Map<string, number>();
    last.labels.forEach((l, i) => lastAt.set(l, i));
    const before = Int32Array.from(labels, (l) => lastAt.get(l) ?? -1);
    const families: FamilyText[] = [];
    let rendered = 0;
    let sliceStart = performance.now();
    const family = async (head: string, metric: string, value: (i: number) => number): Promise<void> => {
      const prev = last.families[families.length];
      const name = Buffer.from(metric);
      const out = new GrowingBuffer(this.pool, prev ? textLength(prev) + 64 * 1024 : n * 128 + head.length * 3);
      out.write(head);
      const headLength = out.length;
      const ends = new Int32Array(n);
      const values = new Float64Array(n);
      // A run of the previous text being reused: lines [from, to) of the last scrape.
      let from = -1;
      let to = -1;
      const prevStart = (j: number): number => (j === 0 ? prev!.headLength : prev!.ends[j - 1]);
      const flush = (): void => {
        if (from >= 0) out.copy(prev!.block.bytes, prevStart(from), prev!.ends[to - 1]);
        from = -1;
      };
      for (let i = 0; i < n; i++) {
        const v = value(i);
        values[i] = v;
        const j = before[i];
        // NaN is never equal to itself: a NaN value is formatted afresh.
        if (prev !== undefined && j >= 0 && prev.values[j] === v) {
          if (from < 0 || j !== to) { flush(); from = j; }
          to = j + 1;
          ends[i] = out.length + prev.ends[j] - prevStart(from);
        } else {
          flush();
          out.line(name, labelSets[i].bytes, v);
          ends[i] = out.length;
        }
        if (++rendered % RENDER_CHECK === 0 && performance.now() - sliceStart >= RENDER_SLICE_MS) {
          await nextTurn();
          sliceStart = performance.now();
        }
      }
      flush();
      families.push({ block: out.block, ends, headLength, values });
    };
    const help = (metric: string, type: string, what: string): string => `# HELP ${metric} ${what}\n# TYPE ${metric} ${type}\n`;
    for (const [field, c] of SESSION_COUNTERS.entries()) {
      const scale = c.gauge?.scale ?? 1;
      await family(help(c.metric, c.gauge ? 'gauge' : 'counter', c.help), c.metric, (i) => ctr[i * SESSION_ROW_WIDTH + field] / scale);
    }
    const live = (metric: string, type: string, what: string, value: (s: MetricSession) => number): Promise<void> =>
      family(help(metric, type, what), metric, (i) => value(sessions[i]));
    await live('l2tp_session_up', 'gauge', 'Whether the session works: 1 up, 0 down (its tunnel down, or nothing from the peer for peer_timeout).',
      (s) => s.up);
    await live('l2tp_session_transitions_total', 'counter', 'Changes between up and down since the session started.', (s) => s.transitions);
    await live('l2tp_session_mismatches', 'gauge', 'Kinds of configuration mismatch with the peer the diagnostics see now (show session -s says which).',
      (s) => s.mismatches.length);
    // Few sessions have mismatches: this family is written afresh.
    const mismatch = new GrowingBuffer(this.pool, 4096);
    mismatch.write(help('l2tp_session_mismatch', 'gauge', 'A configuration mismatch with the peer that the diagnostics see now (show session -s says which).'));
    for (let i = 0; i < n; i++) {
      for (const kind of sessions[i].mismatches) mismatch.write(`l2tp_session_mismatch${labels[i].slice(0, -1)},kind="${kind}"} 1\n`);
    }
    // A block taken from the pool is the caller's until `done`; the texts kept as `last` are held
    // once more, and go back to the pool when no scrape copies from them or sends them.
    for (const f of last.families) this.pool.drop(f.block);
    // Unless another scrape finished first: then its texts stay `last`.
    if (this.last === last) {
      for (const f of last.families) this.pool.drop(f.block);
      for (const f of families) this.pool.hold(f.block);
      this.last = { labels, families };
    }
    const blocks = [...families.map((f) => f.block), mismatch.block];
    const chunks = [...families.map((f) => f.block.bytes.subarray(0, textLength(f))), mismatch.block.bytes.subarray(0, mismatch.length)];
    let held = true;
    return { chunks, done: () => { if (held) { held = false; for (const b of blocks) this.pool.drop(b); } } };
  }
}

/** Bytes of a scrape, valid until `done` is called (then their buffers are reused). */
export interface ScrapeBytes {
  chunks: Buffer[];
  done(): void;
}

const textLength = (f: FamilyText): number => (f.ends.length > 0 ? f.ends[f.ends.length - 1] : f.headLength);

/**
 * A buffer and its references: the scrape whose text it holds (as `last`), scrapes copying from
 * it, responses still sending it. At none it goes back to its pool.
 */
class Block {
  /** Taken from the pool by one holder. */
  refs = 1;
  constructor(readonly bytes: Buffer) {}
}

/** Blocks kept for reuse: a megabyte buffer allocated per family and scrape is external memory that V8 answers with full collections (a third of the CPU of a reload under scrapes). */
class BlockPool {
  private readonly free: Block[] = [];

  /** The smallest free block of at least `min` bytes, or a new one. */
  take(min: number): Block {
    let i = -1;
    this.free.forEach((b, k) => { if (b.bytes.length >= min && (i < 0 || b.bytes.length < this.free[i].bytes.length)) i = k; });
    if (i < 0) return new Block(Buffer.allocUnsafe(min));
    const [b] = this.free.splice(i, 1);
    b.refs = 1;
    return b;
  }

  hold(b: Block): void { b.refs++; }

  drop(b: Block): void {
    if (--b.refs > 0) return;
    if (this.free.length < POOL_BLOCKS_MAX) this.free.push(b);
  }
}

/** Free blocks kept: the families of about three scrapes. */
const POOL_BLOCKS_MAX = 3 * (SESSION_COUNTERS.length + 4);

/** More than the longest String(number), 25 characters ('-0.0000012345678901234567'). */
const MAX_NUMBER_TEXT = 32;

/** Bytes appended to a pool block that is replaced by one twice as large when full. */
class GrowingBuffer {
  block: Block;
  length = 0;
  constructor(private readonly pool: BlockPool, capacity: number) { this.block = pool.take(Math.max(capacity, 256)); }

  private room(n: number): void {
    if (this.length + n <= this.block.bytes.length) return;
    const bigger = this.pool.take(Math.max(this.block.bytes.length * 2, this.length + n));
    this.block.bytes.copy(bigger.bytes, 0, 0, this.length);
    this.pool.drop(this.block);
    this.block = bigger;
  }

  /** As UTF-8; a UTF-16 unit takes at most 3 bytes. */
  write(text: string): void {
    this.room(text.length * 3);
    this.length += this.block.bytes.write(text, this.length);
  }

  /**
   * One sample line: `name`, `labels`, a space, `value` as String() spells it, a newline. Written
   * as bytes: building each line as a string and encoding it was most of a scrape whose values
   * all moved.
   */
  line(name: Buffer, labels: Buffer, value: number): void {
    this.room(name.length + labels.length + 2 + MAX_NUMBER_TEXT);
    const b = this.block.bytes;
    let at = this.length;
    b.set(name, at);
    at += name.length;
    b.set(labels, at);
    at += labels.length;
    b[at++] = 0x20;
    if (Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
      // Counters: the digits String() would give (it uses no exponent below 1e21).
      let digits = 1;
      for (let x = value; x >= 10; x = Math.floor(x / 10)) digits++;
      let x = value;
      for (let k = at + digits - 1; k >= at; k--) {
        const q = Math.floor(x / 10);
        b[k] = 0x30 + (x - q * 10);
        x = q;
      }
      at += digits;
    } else {
      at += b.write(String(value), at, 'latin1');
    }
    b[at++] = 0x0a;
    this.length = at;
  }

  copy(from: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.length += from.copy(this.block.bytes, this.length, start, end);
  }
}

export class L2tpRegistry extends client.Registry {
  constructor(private readonly snapshot: ScrapeSnapshot, private readonly sessionFamilies: SessionFamilies) { super(); }

  /** A scrape's text as bytes in chunks, as the endpoint sends it; call `done` when they are sent. */
  async scrape(): Promise<ScrapeBytes> {
    return this.snapshot.during(async () => {
      const rest = await super.metrics();
      const families = await this.sessionFamilies.render();
      return { chunks: [...families.chunks, Buffer.from(rest)], done: families.done };
    });
  }

  override async metrics(): Promise<string> {
    const bytes = await this.scrape();
    try {
      return Buffer.concat(bytes.chunks).toString('utf8');
    } finally {
      bytes.done();
    }
  }
}

export function createRegistry(src: MetricsSource, version: string): L2tpRegistry {
  const snapshot = new ScrapeSnapshot(src);
  const reg = new L2tpRegistry(snapshot, new SessionFamilies(src, snapshot));
  client.collectDefaultMetrics({ register: reg });
  replaceOpenFdsGauge(reg);
  for (const { c, field } of TUNNEL_FAMILIES) {
    reg.registerMetric(family(c.metric, c.help, 'counter', () => snapshot.tunnels().map((t) =>
      sample({ tunnel_id: t.tunnel_id }, src.tunnelCounters[t.slot * TUNNEL_ROW_WIDTH + field]))));
  }
  reg.registerMetric(family(TUNNEL_DROPS_FAMILY.metric, TUNNEL_DROPS_FAMILY.help, 'counter', () => {
    const rows = [...snapshot.tunnels().map((t) => ({ id: String(t.tunnel_id), slot: t.slot })), { id: '', slot: src.hostRow }];
    const out: Sample[] = [];
    for (const r of rows) {
      for (const { reason, field } of DROP_REASONS) {
        out.push(sample({ tunnel_id: r.id, reason }, src.tunnelCounters[r.slot * TUNNEL_ROW_WIDTH + field]));
      }
    }
    return out;
  }));
  reg.registerMetric(family('l2tp_tunnel_up', 'Whether the tunnel works: 1 up, 0 down (with hello_interval: the peer answers Hello).',
    'gauge', () => snapshot.tunnels().map((t) => sample({ tunnel_id: t.tunnel_id }, t.up))));
  reg.registerMetric(family('l2tp_tunnel_transitions_total', 'Changes between up and down since the tunnel started.',
    'counter', () => snapshot.tunnels().map((t) => sample({ tunnel_id: t.tunnel_id }, t.transitions))));
  reg.registerMetric(family('l2tp_tunnel_hello_rtt_seconds', 'Round-trip time of the last Hello answered at its first transmission.',
    'gauge', () => snapshot.tunnels().filter((t) => t.rtt_ms !== undefined)
      .map((t) => sample({ tunnel_id: t.tunnel_id }, t.rtt_ms! / 1000))));
  reg.registerMetric(family('l2tp_tunnel_mismatches', 'Kinds of configuration mismatch with the peer the diagnostics see now (show tunnel -s says which).',
    'gauge', () => snapshot.tunnels().map((t) => sample({ tunnel_id: t.tunnel_id }, t.mismatches.length))));
  reg.registerMetric(family('l2tp_tunnel_mismatch', 'A configuration mismatch with the peer that the diagnostics see now (show tunnel -s says which).',
    'gauge', () => snapshot.tunnels().flatMap((t) => t.mismatches.map((kind) => sample({ tunnel_id: t.tunnel_id, kind }, 1)))));
  reg.registerMetric(family('l2tp_tunnels', 'Tunnels running.', 'gauge', () => [sample({}, snapshot.tunnels().length)]));
  reg.registerMetric(family('l2tp_sessions', 'Sessions running.', 'gauge', () => [sample({}, snapshot.sessions().length)]));
  reg.registerMetric(family('l2tpd_build_info', 'l2tpd version and runtime.', 'gauge',
    () => [sample({ version, node: process.version }, 1)]));
  return reg;
}

/**
 * prom-client's process_open_fds lists /proc/self/fd on every scrape: with a tap per session,
 * about 10 ms at ten thousand. Linux 6.2 and later give the count as the directory's size; the
 * listing stays for older kernels (size 0).
 */
function replaceOpenFdsGauge(reg: client.Registry): void {
  const name = 'process_open_fds';
  if (reg.getSingleMetric(name) === undefined) return; // not Linux: prom-client has none either
  const help = (reg.getSingleMetric(name) as unknown as { help: string }).help;
  reg.removeSingleMetric(name);
  reg.registerMetric(new client.Gauge({
    name, help, registers: [],
    collect() {
      try {
        const size = fs.statSync('/proc/self/fd').size;
        // The listing counts the fd it was read through, closed by now.
        this.set(size > 0 ? size : fs.readdirSync('/proc/self/fd').length - 1);
      } catch { /* left as it was */ }
    },
  }));
}

/** Serve /metrics on host:port. */
export function startMetricsServer(reg: L2tpRegistry, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    reg.scrape().then(
      ({ chunks, done }) => {
        // The chunks are reused once sent, or once the client has gone.
        res.once('close', done);
        res.writeHead(200, { 'content-type': reg.contentType, 'content-length': chunks.reduce((n, c) => n + c.length, 0) });
        for (const c of chunks) res.write(c);
        res.end();
      },
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(server); });
  });
}
