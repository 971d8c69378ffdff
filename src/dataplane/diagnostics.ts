/**
 * The data plane's side of the mismatch diagnostics: what a dropped (or, once a second per
 * session, an accepted) packet looked like, written into the fixed shared rows of status.ts.
 * Called on drop paths and by a per-session once-a-second sample, never per accepted packet;
 * each call is a few stores into a Float64Array, allocates nothing and never throws. The control
 * plane reads the rows and says what the peer sends and which word to change
 * (daemon/diagnose.ts).
 */
import {
  COOKIE_WORDS, DIAG_SLOTS, FOREIGN_WIDTH, ForeignField as F, SAMPLE_WORDS, SessionDiag as SD, SESSION_DIAG_WIDTH,
  TUNNEL_DIAG_WIDTH, TunnelDiag as TD, UNKNOWN_WIDTH, UnknownField as U,
} from './status.js';
import { SOURCE_STRIDE } from '../native/types.js';

function word(b: Uint8Array, p: number, end: number): number {
  if (p + 4 <= end) return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  let w = 0;
  for (let k = 0; k < 4; k++) w = (w << 8) | (p + k < end ? b[p + k] : 0);
  return w >>> 0;
}

/**
 * IDs (session IDs, connection IDs) are stored as int32 (`id | 0`: a uint32 of 2^31 or more
 * passed as an argument is a heap number); readers take `>>> 0`. Times come from clock[0]
 * (wall ms), read here rather than passed, for the same reason.
 */
export class DiagRecorder {
  constructor(private readonly tunnels: Float64Array, private readonly sessions: Float64Array,
    private readonly clock: Float64Array) {}

  /** A data message for a session ID no session has. */
  unknownSession(row: number, sessionId: number, sources: Uint32Array, i: number): void {
    const d = this.tunnels;
    const base = row * TUNNEL_DIAG_WIDTH + TD.Unknown;
    let e = -1;
    let oldest = 0;
    for (let k = 0; k < DIAG_SLOTS; k++) {
      const b = base + k * UNKNOWN_WIDTH;
      if (d[b + U.Count] > 0 && d[b + U.SessionId] === sessionId) { e = b; break; }
      if (k === 0 || d[b + U.LastMs] < d[oldest + U.LastMs]) oldest = b;
    }
    if (e < 0) {
      e = oldest;
      d[e + U.SessionId] = sessionId;
      d[e + U.Count] = 0;
    }
    d[e + U.Count]++;
    d[e + U.LastMs] = this.clock[0];
    const s = i * SOURCE_STRIDE;
    for (let w = 0; w < SOURCE_STRIDE; w++) d[e + U.Source + w] = sources[s + w];
  }

  /** Valid-looking L2TPv3 (a data message's session ID, or a control message's connection ID) from a source not the tunnel's remote. */
  foreignSource(row: number, sources: Uint32Array, i: number, id: number, control: number): void {
    const d = this.tunnels;
    const base = row * TUNNEL_DIAG_WIDTH + TD.Foreign;
    const s = i * SOURCE_STRIDE;
    let e = -1;
    let oldest = 0;
    for (let k = 0; k < DIAG_SLOTS && e < 0; k++) {
      const b = base + k * FOREIGN_WIDTH;
      if (d[b + F.Count] > 0) {
        let same = true;
        for (let w = 0; w < SOURCE_STRIDE; w++) if (d[b + F.Source + w] !== sources[s + w]) same = false;
        if (same) e = b;
      }
      if (k === 0 || d[b + F.LastMs] < d[oldest + F.LastMs]) oldest = b;
    }
    if (e < 0) {
      e = oldest;
      for (let w = 0; w < SOURCE_STRIDE; w++) d[e + F.Source + w] = sources[s + w];
      d[e + F.Count] = 0;
    }
    d[e + F.Count]++;
    d[e + F.LastMs] = this.clock[0];
    d[e + F.Id] = id;
    d[e + F.Control] = control;
  }

  wrongConnectionId(row: number, ccid: number): void {
    const b = row * TUNNEL_DIAG_WIDTH;
    this.tunnels[b + TD.WrongIdCcid] = ccid;
    this.tunnels[b + TD.WrongIdCount]++;
    this.tunnels[b + TD.WrongIdLastMs] = this.clock[0];
  }

  /** A control message this tunnel does not run (type, vendor of the Message Type AVP). */
  otherControl(row: number, type: number, vendor: number): void {
    const b = row * TUNNEL_DIAG_WIDTH;
    this.tunnels[b + TD.OtherType] = type;
    this.tunnels[b + TD.OtherVendor] = vendor;
    this.tunnels[b + TD.OtherCount]++;
    this.tunnels[b + TD.OtherLastMs] = this.clock[0];
  }

  helloIgnored(row: number): void {
    const b = row * TUNNEL_DIAG_WIDTH;
    this.tunnels[b + TD.HelloIgnoredCount]++;
    this.tunnels[b + TD.HelloIgnoredLastMs] = this.clock[0];
  }

  malformedControl(row: number, reason: number): void {
    const b = row * TUNNEL_DIAG_WIDTH;
    this.tunnels[b + TD.MalformedReason] = reason;
    this.tunnels[b + TD.MalformedCount]++;
    this.tunnels[b + TD.MalformedLastMs] = this.clock[0];
  }

  digest(row: number): void {
    this.tunnels[row * TUNNEL_DIAG_WIDTH + TD.DigestLastMs] = this.clock[0];
  }

  /** The cookie did not match: keep the bytes from where the cookie should be (`pos`). */
  cookieMismatch(slot: number, bytes: Uint8Array, pos: number, end: number): void {
    const d = this.sessions;
    const b = slot * SESSION_DIAG_WIDTH;
    for (let w = 0; w < COOKIE_WORDS; w++) d[b + SD.CookieWords + w] = word(bytes, pos + 4 * w, end);
    d[b + SD.CookieCount]++;
    d[b + SD.CookieLastMs] = this.clock[0];
  }

  unsequenced(slot: number): void {
    const b = slot * SESSION_DIAG_WIDTH;
    this.sessions[b + SD.UnsequencedCount]++;
    this.sessions[b + SD.UnsequencedLastMs] = this.clock[0];
  }

  /** A received frame's header, from just after the session ID (`pos`) to `end`. */
  sample(slot: number, bytes: Uint8Array, pos: number, end: number): void {
    const d = this.sessions;
    const b = slot * SESSION_DIAG_WIDTH;
    d[b + SD.SampleMs] = this.clock[0];
    d[b + SD.SampleLength] = end - pos;
    for (let w = 0; w < SAMPLE_WORDS; w++) d[b + SD.SampleWords + w] = word(bytes, pos + 4 * w, end);
  }

}
