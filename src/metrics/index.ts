/**
 * Prometheus endpoint. Every l2tp_* value is read from the data plane's shared counters when
 * Prometheus scrapes; nothing is incremented through prom-client on the hot path. Metric
 * families are custom collectors (one pass over the sessions per family, no label hashing), so a
 * scrape of 10,000 sessions stays cheap.
 */
import http from 'node:http';
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

type Sample = { labels: Record<string, string | number>; value: number };
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

/** Per-session families whose lines are cached: the counters, then up, transitions and mismatches. */
const CACHED_FAMILIES = SESSION_COUNTERS.length + 3;
/** Session lines rendered between two turns of the event loop. */
const RENDER_STEP = 5000;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/**
 * The per-session families (15 samples per session) are rendered here rather than through
 * prom-client's formatter, which costs about 2 us per sample (300 ms for 10,000 sessions). The
 * label text of each session is built once and cached by slot; a scrape is then one pass of
 * string concatenation per family.
 */
class SessionFamilies {
  private readonly labelCache: Array<{ tid: number; sid: number; ifname: string; text: string } | undefined> = [];
  /**
   * Each slot's lines as last rendered, with the values they show: a session whose counters did
   * not move since the last scrape (most of ten thousand) costs no formatting and no garbage.
   * Dropped when the slot's labels change (another session took it).
   */
  private readonly lineCache: Array<{ labels: string; values: Float64Array; lines: string[] } | undefined> = [];
  constructor(private readonly src: MetricsSource, private readonly snapshot: ScrapeSnapshot) {}

  /** The line of family `k` (SESSION_COUNTERS, then the live families) for a session. */
  private line(slot: number, labels: string, k: number, metric: string, value: number): string {
    let c = this.lineCache[slot];
    if (c === undefined || c.labels !== labels) {
      c = { labels, values: new Float64Array(CACHED_FAMILIES).fill(NaN), lines: [] };
      this.lineCache[slot] = c;
    }
    // NaN is never equal to itself: the first rendering, and a NaN value, are formatted afresh.
    if (c.values[k] === value) return c.lines[k];
    c.values[k] = value;
    const text = `${metric}${labels} ${value}\n`;
    // Flattened once here (charCodeAt flattens a concatenation in place): kept as a rope, every
    // join of every scrape would walk its pieces again.
    text.charCodeAt(0);
    return (c.lines[k] = text);
  }

  private labels(s: MetricSession): string {
    const c = this.labelCache[s.slot];
    if (c && c.tid === s.tunnel_id && c.sid === s.session_id && c.ifname === s.interface) return c.text;
    const text = `{tunnel_id="${s.tunnel_id}",session_id="${s.session_id}",interface="${escapeLabel(s.interface)}"}`;
    this.labelCache[s.slot] = { tid: s.tunnel_id, sid: s.session_id, ifname: s.interface, text };
    return text;
  }

  /**
   * The families as one flat string. Lines are collected and joined once: built with `+=`, the
   * text of 10,000 sessions is a rope of 150,000 pieces that the HTTP response must flatten
   * (Buffer.byteLength), which cost about 250 ms a scrape and most of the garbage. Rendered in
   * steps of RENDER_STEP lines with a turn of the event loop between them, so that a scrape of
   * ten thousand sessions (about 20 MB of text) does not hold up the API.
   */
  async render(): Promise<string> {
    const sessions = this.snapshot.sessions();
    const labels = sessions.map((s) => this.labels(s));
    // The counter rows as they are now: between the steps a deleted session's slot can be taken
    // by another, whose counters must not appear under the first one's labels.
    const ctr = new Float64Array(sessions.length * SESSION_ROW_WIDTH);
    sessions.forEach((s, i) => ctr.set(this.src.sessionCounters.subarray(s.slot * SESSION_ROW_WIDTH, (s.slot + 1) * SESSION_ROW_WIDTH), i * SESSION_ROW_WIDTH));
    const lines: string[] = [];
    let rendered = 0;
    const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
    const head = (metric: string, type: string, help: string): void => { lines.push(`# HELP ${metric} ${help}\n# TYPE ${metric} ${type}\n`); };
    for (const [field, c] of SESSION_COUNTERS.entries()) {
      const scale = c.gauge?.scale ?? 1;
      head(c.metric, c.gauge ? 'gauge' : 'counter', c.help);
      for (let i = 0; i < sessions.length; i++) {
        lines.push(this.line(sessions[i].slot, labels[i], field, c.metric, ctr[i * SESSION_ROW_WIDTH + field] / scale));
        if (++rendered % RENDER_STEP === 0) await turn();
      }
    }
    let k = SESSION_COUNTERS.length;
    const live = async (metric: string, type: string, help: string, value: (s: MetricSession) => number): Promise<void> => {
      head(metric, type, help);
      const family = k++;
      for (let i = 0; i < sessions.length; i++) {
        lines.push(this.line(sessions[i].slot, labels[i], family, metric, value(sessions[i])));
        if (++rendered % RENDER_STEP === 0) await turn();
      }
    };
    await live('l2tp_session_up', 'gauge', 'Whether the session works: 1 up, 0 down (its tunnel down, or nothing from the peer for peer_timeout).',
      (s) => s.up);
    await live('l2tp_session_transitions_total', 'counter', 'Changes between up and down since the session started.', (s) => s.transitions);
    await live('l2tp_session_mismatches', 'gauge', 'Kinds of configuration mismatch with the peer the diagnostics see now (show session -s says which).',
      (s) => s.mismatches.length);
    head('l2tp_session_mismatch', 'gauge', 'A configuration mismatch with the peer that the diagnostics see now (show session -s says which).');
    for (let i = 0; i < sessions.length; i++) {
      for (const kind of sessions[i].mismatches) lines.push(`l2tp_session_mismatch${labels[i].slice(0, -1)},kind="${kind}"} 1\n`);
    }
    return lines.join('');
  }
}

class L2tpRegistry extends client.Registry {
  constructor(private readonly snapshot: ScrapeSnapshot, private readonly sessionFamilies: SessionFamilies) { super(); }
  override async metrics(): Promise<string> {
    return this.snapshot.during(async () => {
      const rest = await super.metrics();
      return `${await this.sessionFamilies.render()}${rest}`;
    });
  }
}

export function createRegistry(src: MetricsSource, version: string): client.Registry {
  const snapshot = new ScrapeSnapshot(src);
  const reg = new L2tpRegistry(snapshot, new SessionFamilies(src, snapshot));
  client.collectDefaultMetrics({ register: reg });
  for (const { c, field } of TUNNEL_FAMILIES) {
    reg.registerMetric(family(c.metric, c.help, 'counter', () => snapshot.tunnels().map((t) => ({
      labels: { tunnel_id: t.tunnel_id }, value: src.tunnelCounters[t.slot * TUNNEL_ROW_WIDTH + field],
    }))));
  }
  reg.registerMetric(family(TUNNEL_DROPS_FAMILY.metric, TUNNEL_DROPS_FAMILY.help, 'counter', () => {
    const rows = [...snapshot.tunnels().map((t) => ({ id: String(t.tunnel_id), slot: t.slot })), { id: '', slot: src.hostRow }];
    const out: Sample[] = [];
    for (const r of rows) {
      for (const { reason, field } of DROP_REASONS) {
        out.push({ labels: { tunnel_id: r.id, reason }, value: src.tunnelCounters[r.slot * TUNNEL_ROW_WIDTH + field] });
      }
    }
    return out;
  }));
  reg.registerMetric(family('l2tp_tunnel_up', 'Whether the tunnel works: 1 up, 0 down (with hello_interval: the peer answers Hello).',
    'gauge', () => snapshot.tunnels().map((t) => ({ labels: { tunnel_id: t.tunnel_id }, value: t.up }))));
  reg.registerMetric(family('l2tp_tunnel_transitions_total', 'Changes between up and down since the tunnel started.',
    'counter', () => snapshot.tunnels().map((t) => ({ labels: { tunnel_id: t.tunnel_id }, value: t.transitions }))));
  reg.registerMetric(family('l2tp_tunnel_hello_rtt_seconds', 'Round-trip time of the last Hello answered at its first transmission.',
    'gauge', () => snapshot.tunnels().filter((t) => t.rtt_ms !== undefined)
      .map((t) => ({ labels: { tunnel_id: t.tunnel_id }, value: t.rtt_ms! / 1000 }))));
  reg.registerMetric(family('l2tp_tunnel_mismatches', 'Kinds of configuration mismatch with the peer the diagnostics see now (show tunnel -s says which).',
    'gauge', () => snapshot.tunnels().map((t) => ({ labels: { tunnel_id: t.tunnel_id }, value: t.mismatches.length }))));
  reg.registerMetric(family('l2tp_tunnel_mismatch', 'A configuration mismatch with the peer that the diagnostics see now (show tunnel -s says which).',
    'gauge', () => snapshot.tunnels().flatMap((t) => t.mismatches.map((kind) => ({ labels: { tunnel_id: t.tunnel_id, kind }, value: 1 })))));
  reg.registerMetric(family('l2tp_tunnels', 'Tunnels running.', 'gauge', () => [{ labels: {}, value: snapshot.tunnels().length }]));
  reg.registerMetric(family('l2tp_sessions', 'Sessions running.', 'gauge', () => [{ labels: {}, value: snapshot.sessions().length }]));
  reg.registerMetric(family('l2tpd_build_info', 'l2tpd version and runtime.', 'gauge',
    () => [{ labels: { version, node: process.version }, value: 1 }]));
  return reg;
}

/** Serve /metrics on host:port. */
export function startMetricsServer(reg: client.Registry, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    reg.metrics().then(
      (text) => res.writeHead(200, { 'content-type': reg.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(server); });
  });
}
