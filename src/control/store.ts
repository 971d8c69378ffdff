/**
 * The config file: the persistent desired state (docs/architecture.md "The control plane"). Loaded at start-up and on reload,
 * written back after every successful change, atomically: temp file in the same directory,
 * fsync, rename over the target, fsync the directory. A crash at any point leaves either the
 * old or the new file, never a partial one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './errors.js';
import type { Config } from './model.js';
import { MAX_JSON_DEPTH, emptyConfig, nestedDeeperThan, sortConfig, validateConfig } from './validate.js';
import { inWordOrder } from './vocabulary.js';
import { TUNNEL_WORDS } from './tunnel-words.js';
import { SESSION_WORDS } from './session-words.js';

export const CONFIG_FILE_MODE = 0o640;
/** The config that removes everything, as a user writes it. */
/** The config that removes everything on reload (a missing or empty file is refused then). */
export const EXPLICIT_EMPTY = '{"tunnels": [], "sessions": []}';
export const CONFIG_DIR_MODE = 0o750;

/**
 * The bytes of each entry as serializeConfig writes it (2-space JSON indented into its array),
 * by entry. Entries are normalised once and never changed afterwards (a change makes a new
 * object), so writing a file of ten thousand sessions after one add formats one entry and copies
 * the bytes of the others.
 */
const entryBytes = new WeakMap<object, Buffer>();

function bytesOf(entry: object, words: Parameters<typeof inWordOrder>[1]): Buffer {
  let bytes = entryBytes.get(entry);
  if (bytes === undefined) {
    bytes = Buffer.from(`    ${JSON.stringify(inWordOrder(entry, words), null, 2).replace(/\n/g, '\n    ')}`);
    entryBytes.set(entry, bytes);
  }
  return bytes;
}

const piece = (text: string): Buffer => Buffer.from(text);
const PIECES = {
  head: piece('{\n  "tunnels": '), between: piece(',\n  "sessions": '), tail: piece('\n}\n'),
  empty: piece('[]'), open: piece('[\n'), comma: piece(',\n'), close: piece('\n  ]'),
};

/**
 * Entries are cut into chunks whose ends depend only on the entries themselves (an entry whose
 * ids hash to 0 modulo CHUNK_SPREAD ends one), so an add or delete changes the chunk it falls in
 * and no other: a write after one change of ten thousand sessions copies some 80 cached chunks
 * instead of joining ten thousand entries.
 */
const CHUNK_SPREAD = 128;
/** A chunk's bytes (its entries joined by ",\n"), by its first entry; valid while its entries are the same objects. */
const chunkBytes = new WeakMap<object, { entries: object[]; bytes: Buffer }>();

const endsChunk = (e: { tunnel_id: number; session_id?: number }): boolean =>
  ((Math.imul(e.tunnel_id, 0x9e3779b1) ^ Math.imul(e.session_id ?? 0, 0x85ebca77)) >>> 0) % CHUNK_SPREAD === 0;

function chunkOf(entries: object[], words: Parameters<typeof inWordOrder>[1]): Buffer {
  const cached = chunkBytes.get(entries[0]);
  if (cached && cached.entries.length === entries.length && cached.entries.every((e, i) => e === entries[i])) return cached.bytes;
  const parts: Buffer[] = [];
  entries.forEach((e, i) => { if (i > 0) parts.push(PIECES.comma); parts.push(bytesOf(e, words)); });
  const bytes = Buffer.concat(parts);
  chunkBytes.set(entries[0], { entries, bytes });
  return bytes;
}

/**
 * Stable text of a config, in pieces to be written one after the other: sorted entries, keys in
 * word-table order, 2-space JSON, trailing newline (the bytes of JSON.stringify(…, null, 2)).
 */
export function serializeConfigPieces(cfg: Config): Buffer[] {
  const sorted = sortConfig(cfg);
  const out: Buffer[] = [PIECES.head];
  const list = (entries: Array<{ tunnel_id: number; session_id?: number }>, words: Parameters<typeof inWordOrder>[1]): void => {
    if (entries.length === 0) { out.push(PIECES.empty); return; }
    out.push(PIECES.open);
    let from = 0;
    for (let i = 0; i < entries.length; i++) {
      if (i < entries.length - 1 && !endsChunk(entries[i])) continue;
      if (from > 0) out.push(PIECES.comma);
      out.push(chunkOf(entries.slice(from, i + 1), words));
      from = i + 1;
    }
    out.push(PIECES.close);
  };
  list(sorted.tunnels, TUNNEL_WORDS);
  out.push(PIECES.between);
  list(sorted.sessions, SESSION_WORDS);
  out.push(PIECES.tail);
  return out;
}

/** serializeConfigPieces as one string. */
export function serializeConfig(cfg: Config): string {
  return Buffer.concat(serializeConfigPieces(cfg)).toString('utf8');
}

export class ConfigStore {
  readonly path: string;

  constructor(filePath: string) {
    this.path = filePath;
  }

  /** Missing file: empty config. Unreadable, invalid JSON or invalid config: ConfigError naming the file. */
  load(): Config {
    const data = this.loadRaw();
    try {
      return validateConfig(data);
    } catch (err) {
      if (err instanceof ConfigError) throw err.withContext(this.path);
      throw err;
    }
  }

  /**
   * The parsed but not yet validated file. Unreadable file or invalid JSON: ConfigError naming
   * the file. A missing or empty file is an empty config at start-up; on reload it is refused,
   * because a file that vanished or was truncated is far more likely a mistake than the wish to
   * remove everything, which takes an explicit `{"tunnels": [], "sessions": []}`.
   */
  loadRaw(when: 'start' | 'reload' = 'start'): unknown {
    const refuse = (what: string): never => {
      throw new ConfigError('config', this.path, EXPLICIT_EMPTY,
        `${this.path}: ${what}; reload refused, running state kept (to remove everything, write ${EXPLICIT_EMPTY})`);
    };
    let text: string;
    try {
      text = fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return when === 'start' ? emptyConfig() : refuse('missing');
      throw new ConfigError('config', this.path, 'a readable file', `${this.path}: cannot read: ${e.code ?? e.message}`);
    }
    if (text.trim() === '') return when === 'start' ? emptyConfig() : refuse('empty');
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch (err) {
      throw new ConfigError('config', this.path, 'valid JSON', `${this.path}: invalid JSON: ${(err as Error).message}`);
    }
    if (nestedDeeperThan(value)) {
      throw new ConfigError('config', this.path, `JSON nested at most ${MAX_JSON_DEPTH} levels deep`,
        `${this.path}: nested deeper than ${MAX_JSON_DEPTH} levels; expected {"tunnels": [...], "sessions": [...]}`);
    }
    return value;
  }

  /** Remove the config file's temp files that dead writers left (removeStaleTemps). */
  removeStaleTemps(): string[] {
    return removeStaleTemps(this.path);
  }

  /**
   * Validate and write `cfg` atomically. The directory is created (0750) if missing; the file
   * gets mode 0640. Throws (and leaves the old file untouched) on any failure.
   */
  save(cfg: Config): void {
    this.saveValid(validateConfig(cfg));
  }

  /**
   * save() for a config already valid as a whole: the daemon's, whose every entry was normalised
   * and checked against the others (ConfigIndex) before it was taken. Re-validating ten thousand
   * entries on every change would cost more than the change.
   */
  saveValid(cfg: Config): void {
    writeFileAtomic(this.path, serializeConfigPieces(cfg), CONFIG_FILE_MODE, CONFIG_DIR_MODE);
  }
}

/**
 * Remove the temp files that writeFileAtomic, killed between open and rename, left beside
 * `filePath` (`<file>.tmp-<pid>` of a process that no longer runs). Returns the names removed.
 */
export function removeStaleTemps(filePath: string): string[] {
  const dir = path.dirname(filePath);
  const prefix = `${path.basename(filePath)}.tmp-`;
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = name.slice(prefix.length);
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid || processRuns(Number(pid))) continue;
    try {
      fs.unlinkSync(path.join(dir, name));
      removed.push(name);
    } catch { /* gone meanwhile, or not ours to remove */ }
  }
  return removed;
}

/** Whether a process with this pid exists (EPERM: it does, as another user's). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Write `text` (a string, its bytes, or its bytes in pieces) to `file` so that a crash at any
 * point leaves the old file or the new one, never a partial one: temp file in the same directory
 * (created with `dirMode` if missing), fsync, rename over the target, fsync the directory.
 * Throws, leaving the old file, on any failure.
 */
export function writeFileAtomic(file: string, text: string | Buffer | Buffer[], mode: number, dirMode: number): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: dirMode });
  const tmp = `${file}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w', mode);
    fs.fchmodSync(fd, mode); // umask may have narrowed it; never widened beyond `mode`
    if (Array.isArray(text)) writeAll(fd, text);
    else fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) {
      try { fs.closeSync(fd); } catch { /* already failing */ }
    }
    try { fs.unlinkSync(tmp); } catch { /* may not exist */ }
    throw err;
  }
  syncDir(dir);
}

/** writev until every piece is written (a short write resumes where it stopped). */
function writeAll(fd: number, pieces: Buffer[]): void {
  let rest = pieces.filter((p) => p.length > 0);
  while (rest.length > 0) {
    let n = fs.writevSync(fd, rest);
    let i = 0;
    while (i < rest.length && n >= rest[i].length) n -= rest[i++].length;
    rest = rest.slice(i);
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    // Some filesystems refuse fsync on directories; the rename itself has happened.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
