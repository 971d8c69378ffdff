/**
 * Where each session's send numbering resumes when l2tpd starts again (docs/sequencing.md
 * "Across restarts"): one JSON file in the state directory, written atomically. A clean stop
 * writes the exact next numbers with `clean: true`. While l2tpd runs the file says `clean: false`
 * and holds numbers at most SEQ_SAVE_STRIDE (plus a second's traffic) behind the real ones, so a
 * start after a crash knows to resume SEQ_CRASH_SKIP ahead of them.
 *
 *   { "clean": true, "sessions": { "3000/1000": { "next": 123456, "numbered": true }, ... } }
 *
 * Keys are tunnel_id/session_id. `numbered`: the session was sending numbers (its `seq`, or what
 * the peer's S bit switched it to); without it the session starts as its `seq` says. A bare
 * number (files from before `numbered` was kept) is read as `{ "next": number }`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SEQ_MASK } from '../protocol/index.js';
import { removeStaleTemps, writeFileAtomic } from './store.js';

export const TX_SEQ_FILE = 'tx-sequence.json';
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

/** Where one session's sending resumes. */
export interface TxSeqEntry {
  /** The next number to send. */
  next: number;
  /** Whether it was sending numbers; unknown for an entry from an older file. */
  numbered?: boolean;
}

export interface TxSeqSaved {
  /** Where each session resumes, by session key; what a file has is kept even if parts are bad. */
  next: Map<string, TxSeqEntry>;
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
    const next = new Map<string, TxSeqEntry>();
    const bad: string[] = [];
    for (const [key, value] of Object.entries(sessions)) {
      const entry = parseEntry(value);
      if (/^\d+\/\d+$/.test(key) && entry) next.set(key, entry);
      else bad.push(key);
    }
    return {
      next, clean: obj.clean === true, found: true,
      ...(bad.length ? { error: `entries ignored (not tunnel_id/session_id: { next: 0..${SEQ_MASK}, numbered: true|false }): ${bad.slice(0, 5).join(', ')}` } : {}),
    };
  }

  /** Remove the temp files of writers that died before renaming theirs over the file. */
  removeStaleTemps(): string[] {
    return removeStaleTemps(this.path);
  }

  /** The keys as last sorted, and each entry's text as last written: a save after a change formats only what moved. */
  private sortedKeys: string[] = [];
  private readonly entryText = new Map<string, { entry: TxSeqEntry; text: string }>();

  save(next: Map<string, TxSeqEntry>, clean: boolean): void {
    const kept = this.sortedKeys.filter((k) => {
      if (next.has(k)) return true;
      this.entryText.delete(k);
      return false;
    });
    // Only removals (sessions stopping): the order stands.
    if (kept.length === next.size) this.sortedKeys = kept;
    else {
      // Keys are `tunnel_id/session_id`: sorted by the two numbers (a locale-aware compare costs
      // seconds for ten thousand keys).
      const ids = (key: string): [number, number] => { const at = key.indexOf('/'); return [Number(key.slice(0, at)), Number(key.slice(at + 1))]; };
      this.sortedKeys = [...next.keys()].map((key) => ({ key, id: ids(key) }))
        .sort((a, b) => a.id[0] - b.id[0] || a.id[1] - b.id[1]).map(({ key }) => key);
    }
    // The text of JSON.stringify({ clean, sessions }, null, 2), an entry at a time.
    const entries = this.sortedKeys.map((key) => {
      const e = next.get(key)!;
      const c = this.entryText.get(key);
      if (c && c.entry.next === e.next && c.entry.numbered === e.numbered) return c.text;
      const value = e.numbered === undefined ? { next: e.next } : { next: e.next, numbered: e.numbered };
      const text = `    ${JSON.stringify(key)}: ${JSON.stringify(value, null, 2).replace(/\n/g, '\n    ')}`;
      this.entryText.set(key, { entry: { ...e }, text });
      return text;
    });
    const sessions = entries.length === 0 ? '{}' : `{\n${entries.join(',\n')}\n  }`;
    writeFileAtomic(this.path, `{\n  "clean": ${clean},\n  "sessions": ${sessions}\n}\n`, FILE_MODE, DIR_MODE);
  }
}

/** An entry as written, or a bare number from an older file; undefined if it is neither. */
function parseEntry(value: unknown): TxSeqEntry | undefined {
  const isSeq = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= SEQ_MASK;
  if (isSeq(value)) return { next: value };
  if (typeof value !== 'object' || value === null) return undefined;
  const { next, numbered } = value as { next?: unknown; numbered?: unknown };
  if (!isSeq(next)) return undefined;
  if (numbered === undefined) return { next };
  return typeof numbered === 'boolean' ? { next, numbered } : undefined;
}
