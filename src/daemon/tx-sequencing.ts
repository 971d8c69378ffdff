/**
 * The control plane's side of each session's sending of sequence numbers (docs/sequencing.md
 * "Sending"): where a session's numbering starts (0 for a new session; where it stopped after a
 * restart, a reload that re-creates it, or a crash), keeping that on disk, and reporting when the
 * peer's S bit switches a session's numbering on or off. The worker keeps the live state in
 * shared memory (layout.ts SessionTx); this reads it once a second, so nothing here runs per
 * packet.
 */
import type { Logger } from 'pino';
import { SEQ_CRASH_SKIP, SEQ_SAVE_STRIDE, seqAfterCrash, seqAhead } from '../protocol/index.js';
import type { TxSeqEntry, TxSeqStore } from '../control/tx-seq-store.js';

/** What the data plane tells about a session's sending (DataPlane.txState). */
export interface TxStateSource {
  txState(slot: number): { nextSeq: number; numbered: boolean; changes: number };
}

/** A running session as the engine knows it. */
export interface TxSession {
  key: string;
  tunnelId: number;
  sessionId: number;
  slot: number;
}

/** A session's S-bit switches are logged at most this often; the ones between are summed up. */
export const SEQ_LOG_INTERVAL_MS = 10000;
/** Sessions whose switches are logged one by one per check; the rest in one line. */
export const SEQ_LOG_LINES_MAX = 20;

export class TxSequencing {
  /** Where sessions that are not running resume, by key. */
  private readonly resume = new Map<string, TxSeqEntry>();
  /** What the file holds for running sessions, by key (the stride is measured from it). */
  private readonly saved = new Map<string, number>();
  /** Per running session: the switch count last reported and when. */
  private readonly reported = new Map<string, { changes: number; at: number }>();
  private dirty = false;
  private saveFailed = false;
  /** A session left the data plane without its stop confirmed: its number may be behind the real one. */
  private inexact = false;

  constructor(private readonly store: TxSeqStore | undefined, private readonly dp: TxStateSource,
    private readonly log: Logger, private readonly now: () => number = Date.now) {}

  /** At start-up, before any session starts: read the file; keep only sessions of `keys`. */
  load(keys: Set<string>): void {
    if (!this.store) return;
    for (const name of this.store.removeStaleTemps()) this.log.info({ file: name }, 'removed a send numbering temp file an interrupted write left');
    const r = this.store.load();
    if (r.error) this.log.warn({ file: this.store.path, err: r.error }, 'send numbering file not used');
    for (const [key, e] of r.next) if (keys.has(key)) this.resume.set(key, r.clean ? e : { ...e, next: seqAfterCrash(e.next) });
    // After a crash, a configured session the file does not name may have been added and have
    // sent just before it (the file is written shortly after an add, not with it): it starts
    // ahead too, as if its last saved number were 0.
    if (r.found && !r.clean) for (const key of keys) if (!this.resume.has(key)) this.resume.set(key, { next: seqAfterCrash(0) });
    if (r.found && !r.clean && this.resume.size > 0) {
      this.log.warn({ sessions: this.resume.size, skip: SEQ_CRASH_SKIP },
        'l2tpd did not stop cleanly: numbered sessions resume ahead of their last saved number (a Linux peer drops 5 frames, then follows)');
    }
    // From here on the numbers are no longer exact: a crash while sessions start must not reuse them.
    this.dirty = true;
    this.flush([]);
  }

  /**
   * How a session starting now sends: its first number, and whether it numbers. It numbers as
   * it did when it stopped if the peer's S bit may switch it (`seqMirror`), as `seqSend` says
   * otherwise or when that is not known.
   */
  startAt(key: string, seq: { seqSend: boolean; seqMirror: boolean }): { nextSeq: number; numbered: boolean } {
    const e = this.resume.get(key);
    return { nextSeq: e?.next ?? 0, numbered: seq.seqMirror && e?.numbered !== undefined ? e.numbered : seq.seqSend };
  }

  /** A stopped session starts again numbering as its `seq` says (the word changed). */
  forgetNumbering(key: string): void {
    const e = this.resume.get(key);
    if (e) this.resume.set(key, { next: e.next });
  }

  /** The session runs from `startAt(key)` on: the file must say so before it sends much. */
  started(s: TxSession): void {
    this.saved.set(s.key, this.resume.get(s.key)?.next ?? 0);
    this.resume.delete(s.key);
    this.reported.set(s.key, { changes: 0, at: 0 });
    this.dirty = true;
  }

  /**
   * The session stopped in the data plane; `removed`: deleted for good (a new one starts at 0).
   * `confirmed` false: the data plane did not confirm the stop, so the worker may have sent more
   * than the number read now; the clean stop then writes `clean: false`.
   */
  stopped(s: TxSession, removed: boolean, confirmed = true): void {
    if (!confirmed) this.inexact = true;
    const { nextSeq, numbered } = this.dp.txState(s.slot);
    if (removed) this.resume.delete(s.key);
    else this.resume.set(s.key, { next: nextSeq, numbered });
    this.saved.delete(s.key);
    this.reported.delete(s.key);
    this.dirty = true;
  }

  /**
   * Write the file now if anything changed since the last write (or always, for a clean stop).
   * `clean`: every session is out of the data plane; written `clean: false` all the same if a
   * session's stop was not confirmed.
   */
  flush(running: TxSession[], clean = false): void {
    if (!this.store || (!this.dirty && !clean)) return;
    const next = new Map(this.resume);
    for (const s of running) {
      const { nextSeq, numbered } = this.dp.txState(s.slot);
      next.set(s.key, { next: nextSeq, numbered });
    }
    if (clean && this.inexact) {
      this.log.warn({ file: this.store.path }, 'a session did not stop cleanly in the data plane: its numbering resumes ahead after the restart');
    }
    try {
      this.store.save(next, clean && !this.inexact);
      for (const s of running) this.saved.set(s.key, next.get(s.key)!.next);
      this.dirty = false;
      if (this.saveFailed) this.log.info({ file: this.store.path }, 'send numbering saved again');
      this.saveFailed = false;
    } catch (err) {
      // Logged once per failing streak; the next check retries.
      if (!this.saveFailed) {
        this.log.error({ file: this.store.path, err: (err as Error).message },
          'cannot save send numbering: after a restart, numbered sessions would start again at 0');
      }
      this.saveFailed = true;
    }
  }

  /**
   * Once a second: save when a session's numbering has moved SEQ_SAVE_STRIDE since the last save
   * (the bound seqAfterCrash relies on), and report the peer's S bit switching a session's numbering.
   */
  check(running: TxSession[]): void {
    const now = this.now();
    const lines: { s: TxSession; numbered: boolean; changes: number }[] = [];
    let more = 0;
    for (const s of running) {
      const tx = this.dp.txState(s.slot);
      const saved = this.saved.get(s.key);
      if (saved === undefined || seqAhead(saved, tx.nextSeq) >= SEQ_SAVE_STRIDE) this.dirty = true;
      const r = this.reported.get(s.key) ?? { changes: 0, at: 0 };
      const changes = (tx.changes - r.changes) | 0;
      if (changes === 0 || now - r.at < SEQ_LOG_INTERVAL_MS) continue;
      this.reported.set(s.key, { changes: tx.changes, at: now });
      if (lines.length < SEQ_LOG_LINES_MAX) lines.push({ s, numbered: tx.numbered, changes });
      else more++;
    }
    for (const { s, numbered, changes } of lines) {
      const fields = { tunnel_id: s.tunnelId, session_id: s.sessionId, tx_seq: numbered ? 'on' : 'off', changes };
      const what = numbered ? 'the peer sends sequence numbers: sending them too' : 'the peer stopped sending sequence numbers: sending none';
      // More than one switch between two reports: a peer that keeps flipping its S bit.
      if (changes > 1) this.log.warn(fields, `${what} (switched ${changes} times since the last report)`);
      else this.log.info(fields, what);
    }
    if (more > 0) this.log.warn({ sessions: more }, 'the peer switched sequence numbers on or off for more sessions (not listed)');
    this.flush(running);
  }
}
