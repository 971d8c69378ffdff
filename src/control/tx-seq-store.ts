/**
 * Where each session's send numbering resumes when l2tpd starts again (docs/sequencing.md
 * "Across restarts"): one JSON file in the state directory, written atomically. A clean stop
 * writes the exact next numbers with `clean: true`. While l2tpd runs the file says `clean: false`
 * and holds numbers at most SEQ_SAVE_STRIDE (plus a second's traffic) behind the real ones, so a
 * start after a crash knows to resume SEQ_CRASH_SKIP ahead of them.
 *
 *   { "clean": true, "sessions": { "3000/1000": 123456, ... } }     keys: tunnel_id/session_id
 */
import fs from 'node:fs';
import path from 'node:path';
import { SEQ_MASK } from '../protocol/index.js';
import { writeFileAtomic } from './store.js';

export const TX_SEQ_FILE = 'tx-sequence.json';
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

export interface TxSeqSaved {
  /** The next number to send, by session key; what a file has is kept even if parts are bad. */
  next: Map<string, number>;
  /** The last run stopped cleanly: the numbers are exact. */
  clean: boolean;
  /** A file was there. */
  found: boolean;
  /** Why the file (or an entry) was not used. */
  error?: string;
}

export class TxSeqStore {
  readonly path: string;

  constructor(stateDir: string) {
    this.path = path.join(stateDir, TX_SEQ_FILE);
  }

  load(): TxSeqSaved {
    let text: string;
    try {
      text = fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { next: new Map(), clean: false, found: false, ...(code === 'ENOENT' ? {} : { error: `cannot read: ${code}` }) };
    }
    let data: unknown;
    try { data = JSON.parse(text); } catch (err) {
      return { next: new Map(), clean: false, found: true, error: `invalid JSON: ${(err as Error).message}` };
    }
    const obj = (typeof data === 'object' && data !== null ? data : {}) as { clean?: unknown; sessions?: unknown };
    const sessions = (typeof obj.sessions === 'object' && obj.sessions !== null ? obj.sessions : {}) as Record<string, unknown>;
    const next = new Map<string, number>();
    const bad: string[] = [];
    for (const [key, value] of Object.entries(sessions)) {
      if (/^\d+\/\d+$/.test(key) && Number.isInteger(value) && (value as number) >= 0 && (value as number) <= SEQ_MASK) next.set(key, value as number);
      else bad.push(key);
    }
    return {
      next, clean: obj.clean === true, found: true,
      ...(bad.length ? { error: `entries ignored (not tunnel_id/session_id: 0..${SEQ_MASK}): ${bad.slice(0, 5).join(', ')}` } : {}),
    };
  }

  save(next: Map<string, number>, clean: boolean): void {
    const sessions = Object.fromEntries([...next].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })));
    writeFileAtomic(this.path, `${JSON.stringify({ clean, sessions }, null, 2)}\n`, FILE_MODE, DIR_MODE);
  }
}
