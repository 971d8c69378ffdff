/**
 * Mismatch diagnostics: from what the data plane recorded about dropped (and, once a second per
 * session, accepted) traffic (dataplane/status.ts rows), say what the peer actually sends and
 * which word to change. Control plane only; pure apart from reading the rows it is given.
 *
 * Entries older than DIAG_MAX_AGE_MS are not reported (the rows keep a few entries per tunnel
 * and the oldest is overwritten, so memory is fixed). Sample-based findings (sublayer,
 * sequencing) need SAMPLES_TO_DIAGNOSE samples in a row that agree; SampleHistory keeps that
 * count per session.
 */
import {
  COOKIE_WORDS, DIAG_SLOTS, FOREIGN_WIDTH, ForeignField as F, HelloField as H, SAMPLE_WORDS, SessionDiag as SD, TunnelDiag as TD, UNKNOWN_WIDTH,
  UnknownField as U,
} from '../dataplane/status.js';
import { CONTROL_REASON_NAMES, HelloReason, messageTypeName } from '../protocol/index.js';

/** How long a recorded drop stays worth reporting. */
export const DIAG_MAX_AGE_MS = 10 * 60 * 1000;
/** Consecutive samples that must agree before a sublayer or sequencing mismatch is reported. */
export const SAMPLES_TO_DIAGNOSE = 3;

export type DiagnosticKind =
  | 'unknown_session' | 'foreign_source' | 'connection_id' | 'hello_not_enabled' | 'no_hello_answer' | 'control_message'
  | 'malformed_control' | 'control_authentication' | 'cookie' | 'sublayer' | 'peer_numbers_frames' | 'peer_does_not_number_frames';

export interface Diagnostic {
  kind: DiagnosticKind;
  /** The word to change, here or on the peer (the message says which). */
  word: string;
  /** The value the peer sent, as text. */
  seen: string;
  /** Packets (or samples) it is based on. */
  count: number;
  /** ISO time it was last seen. */
  last_seen: string;
  message: string;
}

/** What of a tunnel's configuration the diagnostics use. */
export interface TunnelFacts {
  tunnel_id: number;
  peer_tunnel_id: number;
  encap: 'udp' | 'ip';
  remote: string;
  udp_dport?: number;
  hello_interval?: number;
}

export interface SessionFacts {
  tunnel_id: number;
  session_id: number;
  peer_session_id: number;
  cookie?: string;
  peer_cookie?: string;
  l2spec_type?: 'none' | 'default';
  seq?: 'none' | 'send' | 'recv' | 'both';
  seq_mirror?: 'on' | 'off';
  peer_offset?: number;
}

// ------------------------------------------------------------------------------------------
// Sources and bytes.

/** recvBatch's source words as "address:port" (IPv6 in brackets); the port is left out when 0 (raw IP). */
export function formatSource(words: ArrayLike<number>, at = 0): string {
  const fam = words[at] >>> 16;
  const port = words[at] & 0xffff;
  let addr: string;
  if (fam === 4) {
    const a = words[at + 1] >>> 0;
    addr = [a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff].join('.');
  } else {
    const groups: number[] = [];
    for (let w = 1; w <= 4; w++) { const v = words[at + w] >>> 0; groups.push(v >>> 16, v & 0xffff); }
    addr = compressV6(groups);
  }
  if (port === 0) return addr;
  return fam === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function compressV6(groups: number[]): string {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** The words of a row (big-endian uint32 each) back into bytes. */
function bytesOf(row: ArrayLike<number>, at: number, words: number): Uint8Array {
  const out = new Uint8Array(words * 4);
  for (let w = 0; w < words; w++) {
    const v = row[at + w] >>> 0;
    out[4 * w] = v >>> 24; out[4 * w + 1] = (v >>> 16) & 0xff; out[4 * w + 2] = (v >>> 8) & 0xff; out[4 * w + 3] = v & 0xff;
  }
  return out;
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Ethertypes that, with a sane payload start, make a frame plausible. */
const ETHERTYPES = new Set([0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x88cc, 0x8863, 0x8864, 0x8847, 0x8848, 0x88e5, 0x8809,
  0x88b5, 0x88b6, 0x22f0, 0x88f7]);

/**
 * How much the bytes at `off` look like the start of an Ethernet frame: 0 not at all, 1 a known
 * ethertype or an 802.3 length with an LLC header, 2 an IPv4/IPv6/ARP header right after it.
 * The source MAC must be unicast and not zero.
 */
export function ethernetScore(b: Uint8Array, off: number, len: number): number {
  if (off < 0 || off + 18 > len || off + 18 > b.length) return 0;
  const src0 = b[off + 6];
  if ((src0 & 1) !== 0) return 0;
  let zero = true;
  for (let k = 6; k < 12; k++) if (b[off + k] !== 0) zero = false;
  if (zero) return 0;
  let type = (b[off + 12] << 8) | b[off + 13];
  let p = off + 14;
  if ((type === 0x8100 || type === 0x88a8) && p + 4 <= len) {
    type = (b[p + 2] << 8) | b[p + 3];
    p += 4;
  }
  if (type === 0x0800) return b[p] >>> 4 === 4 && (b[p] & 0xf) >= 5 ? 2 : 0;
  if (type === 0x86dd) return b[p] >>> 4 === 6 ? 2 : 0;
  if (type === 0x0806) return b[p] === 0 && b[p + 1] === 1 && b[p + 2] === 8 && b[p + 3] === 0 ? 2 : 0;
  if (ETHERTYPES.has(type)) return 1;
  if (type > 0 && type <= 1500) return (b[p] === 0x42 && b[p + 1] === 0x42) || (b[p] === 0xaa && b[p + 1] === 0xaa) ? 1 : 0;
  return 0;
}

const cookieLength = (hex: string | undefined): number => (hex ? hex.length / 2 : 0);

/** Where the frame starts in a sample (bytes after the session ID), as this session reads it. */
function expectedFrameOffset(s: SessionFacts): number {
  return cookieLength(s.peer_cookie) + ((s.l2spec_type ?? 'default') === 'default' ? 4 : 0) + (s.peer_offset ?? 0);
}

// ------------------------------------------------------------------------------------------
// Samples: what a session's received frames look like, over time.

export type SampleVerdict = 'ok' | 'earlier4' | 'later4' | 'unclear';

/** Classify one sample: is the frame where this session expects it, or 4 bytes off? */
export function classifySample(s: SessionFacts, sample: Uint8Array, length: number): SampleVerdict {
  const e = expectedFrameOffset(s);
  const len = Math.min(length, sample.length);
  const here = ethernetScore(sample, e, len);
  if (here > 0) return 'ok';
  if (ethernetScore(sample, e - 4, len) === 2) return 'earlier4';
  if (ethernetScore(sample, e + 4, len) === 2) return 'later4';
  return 'unclear';
}

/** Per session: the last sample looked at and how many in a row agreed. Fixed size. */
export class SampleHistory {
  lastSampleMs = 0;
  verdict: SampleVerdict = 'unclear';
  run = 0;
  /** Consecutive agreeing samples with the S bit set / clear (default sublayer only). */
  seqRun = 0;
  noSeqRun = 0;
  lastSeq = -1;
  since = 0;

  /** Look at the session's current sample, if it is new. */
  observe(s: SessionFacts, row: Float64Array, base: number): void {
    const at = row[base + SD.SampleMs];
    if (at === 0 || at === this.lastSampleMs) return;
    this.lastSampleMs = at;
    const sample = bytesOf(row, base + SD.SampleWords, SAMPLE_WORDS);
    const v = classifySample(s, sample, row[base + SD.SampleLength]);
    if (v === this.verdict) this.run++;
    else { this.verdict = v; this.run = 1; this.since = at; }
    if (v === 'ok' && (s.l2spec_type ?? 'default') === 'default') {
      const p = cookieLength(s.peer_cookie);
      const sBit = (sample[p] & 0x40) !== 0;
      if (sBit) { this.seqRun++; this.noSeqRun = 0; this.lastSeq = (sample[p + 1] << 16) | (sample[p + 2] << 8) | sample[p + 3]; }
      else { this.noSeqRun++; this.seqRun = 0; }
    } else {
      this.seqRun = 0;
      this.noSeqRun = 0;
    }
  }
}

// ------------------------------------------------------------------------------------------
// Reports.

const iso = (ms: number): string => new Date(ms).toISOString();
const recent = (lastMs: number, now: number): boolean => lastMs > 0 && now - lastMs <= DIAG_MAX_AGE_MS;
const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;

function expectedSource(t: TunnelFacts): string {
  return t.encap === 'udp' ? `${t.remote.includes(':') ? `[${t.remote}]` : t.remote}:${t.udp_dport}` : t.remote;
}

/**
 * What a tunnel's row (and the host row, for IP traffic from this tunnel's remote that matched
 * no tunnel) says. `sessions`: the tunnel's sessions. `hello`: its Hello status row, if any.
 */
export function tunnelDiagnostics(t: TunnelFacts, sessions: SessionFacts[], row: Float64Array, base: number, now: number,
  hello?: { row: Float64Array; base: number }): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (let k = 0; k < DIAG_SLOTS; k++) {
    const e = base + TD.Unknown + k * UNKNOWN_WIDTH;
    if (row[e + U.Count] === 0 || !recent(row[e + U.LastMs], now)) continue;
    out.push(unknownSession(t, sessions, row[e + U.SessionId] >>> 0, formatSource(row, e + U.Source), row[e + U.Count], row[e + U.LastMs]));
  }
  for (let k = 0; k < DIAG_SLOTS; k++) {
    const e = base + TD.Foreign + k * FOREIGN_WIDTH;
    if (row[e + F.Count] === 0 || !recent(row[e + F.LastMs], now)) continue;
    const src = formatSource(row, e + F.Source);
    const id = row[e + F.Id] >>> 0;
    const what = row[e + F.Control] ? `control messages for connection ID ${id}` : `data for session ID ${id}`;
    const port = row[e + F.Source] & 0xffff;
    const sameHost = src.startsWith(t.remote.includes(':') ? `[${t.remote}]` : `${t.remote}:`) || src === t.remote;
    const word = t.encap === 'udp' && sameHost && port !== t.udp_dport ? 'udp_dport' : 'remote';
    out.push({
      kind: 'foreign_source', word, seen: src, count: row[e + F.Count], last_seen: iso(row[e + F.LastMs]),
      message: `${src} sends L2TPv3 (${what}) to this tunnel, which expects ${expectedSource(t)}: `
        + (word === 'udp_dport'
          ? `the peer sends from port ${port} (NAT?); set udp_dport ${port} if that is the peer`
          : `if that is the peer, set remote ${src.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')}`),
    });
  }
  if (row[base + TD.WrongIdCount] > 0 && recent(row[base + TD.WrongIdLastMs], now)) {
    const ccid = row[base + TD.WrongIdCcid] >>> 0;
    out.push({
      kind: 'connection_id', word: 'peer_tunnel_id', seen: String(ccid), count: row[base + TD.WrongIdCount],
      last_seen: iso(row[base + TD.WrongIdLastMs]),
      message: `the peer sends control messages for connection ID ${ccid}, but this tunnel is tunnel_id ${t.tunnel_id}: `
        + `set peer_tunnel_id ${t.tunnel_id} on the peer (or tunnel_id ${ccid} here)`,
    });
  }
  if (row[base + TD.HelloIgnoredCount] > 0 && recent(row[base + TD.HelloIgnoredLastMs], now) && !t.hello_interval) {
    out.push({
      kind: 'hello_not_enabled', word: 'hello_interval', seen: 'HELLO', count: row[base + TD.HelloIgnoredCount],
      last_seen: iso(row[base + TD.HelloIgnoredLastMs]),
      message: 'the peer sends Hello keepalives, which this tunnel does not answer (no hello_interval): set hello_interval here, '
        + 'or turn Hello off on the peer, or it will declare the tunnel dead',
    });
  }
  if (row[base + TD.OtherCount] > 0 && recent(row[base + TD.OtherLastMs], now)) {
    const type = row[base + TD.OtherType];
    const vendor = row[base + TD.OtherVendor];
    const name = vendor !== 0 ? `vendor ${vendor} message type ${type}` : messageTypeName(type);
    const dynamic = vendor === 0 && type >= 1 && type <= 3;
    const keepalive = vendor === 0 && (type === 20 || type === -1);
    out.push({
      kind: 'control_message', word: dynamic ? 'peer configuration' : keepalive ? 'hello_interval' : 'peer configuration',
      seen: name, count: row[base + TD.OtherCount], last_seen: iso(row[base + TD.OtherLastMs]),
      message: dynamic
        ? `the peer sends ${name}: it tries to set up a dynamic (managed) L2TPv3 tunnel; l2tpd runs static tunnels only, `
          + 'so configure the peer for a static (manual) session'
        : keepalive
          ? `the peer sends ${name} acknowledgements, but this tunnel runs no Hello: set hello_interval here or turn Hello off on the peer`
          : `the peer sends ${name}, which static tunnels do not use; dropped`,
    });
  }
  if (row[base + TD.MalformedCount] > 0 && recent(row[base + TD.MalformedLastMs], now)) {
    const reason = CONTROL_REASON_NAMES[row[base + TD.MalformedReason]] ?? String(row[base + TD.MalformedReason]);
    out.push({
      kind: 'malformed_control', word: 'remote', seen: reason, count: row[base + TD.MalformedCount],
      last_seen: iso(row[base + TD.MalformedLastMs]),
      message: `${plural(row[base + TD.MalformedCount], 'malformed control message')} (last: ${reason}) dropped; `
        + 'they changed nothing. A peer that sends them is not speaking L2TPv3 as RFC 3931 describes it',
    });
  }
  if (recent(row[base + TD.DigestLastMs], now)) {
    out.push({
      kind: 'control_authentication', word: 'peer configuration', seen: 'Message Digest AVP', count: 1,
      last_seen: iso(row[base + TD.DigestLastMs]),
      message: 'the peer authenticates its control messages (Message Digest AVP); l2tpd does not, and the peer may refuse '
        + "l2tpd's answers: turn control-message authentication off on the peer",
    });
  }
  if (hello && hello.row[hello.base + H.State] === 0 && hello.row[hello.base + H.Reason] === HelloReason.NoAnswer
    && hello.row[hello.base + H.LastHeardMs] === 0) {
    out.push({
      kind: 'no_hello_answer', word: 'hello_interval', seen: 'no control message', count: hello.row[hello.base + H.HellosSent],
      last_seen: iso(hello.row[hello.base + H.SinceMs]),
      message: 'nothing has ever answered this tunnel\'s Hellos: if the peer runs no Hello (Linux never does), set hello_interval 0 '
        + 'and use peer_timeout on the sessions instead',
    });
  }
  return out;
}

function unknownSession(t: TunnelFacts, sessions: SessionFacts[], sid: number, src: string, count: number, lastMs: number): Diagnostic {
  const swapped = sessions.find((s) => s.peer_session_id === sid);
  const mine = sessions.map((s) => s.session_id);
  let message: string;
  if (swapped) {
    message = `${src} sends to session ID ${sid}, which is the peer_session_id of session ${swapped.session_id} here: session_id and `
      + `peer_session_id look swapped on one side. The peer must send to ${swapped.session_id}: set its peer_session_id ${swapped.session_id}`;
  } else if (mine.length === 1) {
    message = `${src} sends to session ID ${sid}; this tunnel's session receives on ${mine[0]}: did you mean peer_session_id ${mine[0]} `
      + `on the peer (or session_id ${sid} here)?`;
  } else {
    message = `${src} sends to session ID ${sid}, which no session of tunnel ${t.tunnel_id} has`
      + (mine.length ? ` (they receive on ${mine.join(', ')}): did you mean peer_session_id ${mine.join(' or ')} on the peer?`
        : ': add a session with session_id ' + sid);
  }
  return { kind: 'unknown_session', word: 'peer_session_id', seen: String(sid), count, last_seen: iso(lastMs), message };
}

/**
 * What a session's row and sample history say. `sendsNumbers`: whether the frames it sends carry
 * sequence numbers now (the data plane's tx state, `tx_seq`); unknown, it follows from seq and
 * seq_mirror (a mirroring session numbers its frames once the peer's are numbered).
 */
export function sessionDiagnostics(s: SessionFacts, row: Float64Array, base: number, history: SampleHistory | undefined,
  now: number, sendsNumbers?: boolean): Diagnostic[] {
  const out: Diagnostic[] = [];
  const expect = s.peer_cookie ?? '';
  if (row[base + SD.CookieCount] > 0 && recent(row[base + SD.CookieLastMs], now)) {
    const at = bytesOf(row, base + SD.CookieWords, COOKIE_WORDS);
    const n = at.length;
    const seen = hexOf(at.subarray(0, expect.length / 2));
    // No cookie at all: what sits there is the sublayer (00000000 / 40xxxxxx) or the frame.
    const noCookie = ethernetScore(at, (s.l2spec_type ?? 'default') === 'default' ? 4 : 0, n) === 2
      || ((s.l2spec_type ?? 'default') === 'default' && (at[0] === 0 || at[0] === 0x40) && ethernetScore(at, 4, n) > 0);
    out.push({
      kind: 'cookie', word: 'peer_cookie', seen, count: row[base + SD.CookieCount], last_seen: iso(row[base + SD.CookieLastMs]),
      message: noCookie
        ? `frames arrive without a cookie where peer_cookie ${expect} is expected: remove peer_cookie here, or set cookie ${expect} on the peer`
        : `frames arrive with cookie ${seen} where peer_cookie ${expect} is expected: set peer_cookie ${seen} here, or cookie ${expect} on the peer`,
    });
  }
  if (row[base + SD.UnsequencedCount] > 0 && recent(row[base + SD.UnsequencedLastMs], now)) {
    out.push({
      kind: 'peer_does_not_number_frames', word: 'seq', seen: 'no sequence numbers', count: row[base + SD.UnsequencedCount],
      last_seen: iso(row[base + SD.UnsequencedLastMs]),
      message: `${plural(row[base + SD.UnsequencedCount], 'frame')} without a sequence number dropped: the peer does not number its frames `
        + `but this session has seq ${s.seq}; set seq ${s.seq === 'both' ? 'send' : 'none'} here, or seq send (or both) on the peer`,
    });
  }
  if (history && recent(history.lastSampleMs, now)) {
    const l2spec = s.l2spec_type ?? 'default';
    if ((history.verdict === 'earlier4' || history.verdict === 'later4') && history.run >= SAMPLES_TO_DIAGNOSE) {
      const noSublayer = history.verdict === 'earlier4';
      const fix = noSublayer
        ? (l2spec === 'default' ? 'l2spec_type none' : 'a cookie 4 bytes shorter')
        : (l2spec === 'none' ? 'l2spec_type default' : 'a cookie 4 bytes longer');
      out.push({
        kind: 'sublayer', word: fix.startsWith('l2spec') ? 'l2spec_type' : 'peer_cookie',
        seen: noSublayer ? 'frames 4 bytes earlier' : 'frames 4 bytes later', count: history.run, last_seen: iso(history.lastSampleMs),
        message: `received frames only make sense as Ethernet 4 bytes ${noSublayer ? 'before' : 'after'} where this session reads them `
          + `(l2spec_type ${l2spec}${s.peer_cookie ? `, peer_cookie ${s.peer_cookie}` : ''}): the peer ${noSublayer ? 'sends no' : 'sends a'} `
          + `sublayer; set ${fix} here, or the peer's to match`,
      });
    }
    const mirror = s.seq_mirror !== 'off';
    const sends = sendsNumbers ?? (s.seq === 'send' || s.seq === 'both' || mirror);
    if (history.seqRun >= SAMPLES_TO_DIAGNOSE && !sends) {
      out.push({
        kind: 'peer_numbers_frames', word: 'seq', seen: `sequence numbers (last ${history.lastSeq})`, count: history.seqRun,
        last_seen: iso(history.lastSampleMs),
        message: `the peer numbers its frames (S bit set) but this session sends none (seq ${s.seq ?? 'none'}`
          + `${mirror ? '' : ', seq_mirror off'}): a peer that also requires numbers (Linux seq both or recv, Cisco sequencing both) `
          + `drops every frame from here; set seq both${mirror ? '' : ' (or seq_mirror on)'} here, or seq none on the peer`,
      });
    }
  }
  return out;
}
