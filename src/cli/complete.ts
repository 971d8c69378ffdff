/**
 * Shell completion for l2tpctl: what may come next on a command line, from the grammar the
 * parser uses (commands, objects, words, enum values) and, for tunnel and session IDs, from the
 * running daemon. completion/l2tpctl.bash asks through the hidden `l2tpctl __complete CWORD
 * WORD...` (bash's COMP_CWORD and COMP_WORDS) and offers what it prints, one per line; a line
 * `@files` asks for file names as well.
 */
import { commandOf, commandWords, objectOf, STATS_FLAGS, type CompletionWord } from './words.js';

/** What completion may ask the daemon (or the host) for. Each may fail: then nothing is offered. */
export interface CompletionSource {
  tunnelIds(): Promise<number[]>;
  sessionIds(tunnelId?: number): Promise<number[]>;
  /** Network interfaces of this host; `bridges`: only bridges. */
  interfaces(bridges: boolean): string[];
}

export const FILES = '@files';
/** l2tpctl's own options (l2tpctl(8) documents each). */
export const GLOBAL_OPTIONS = ['--socket', '--json', '-j', '--help', '--version', '-V'];
/** What a command line may start with: the commands and the objects. */
export const FIRST_WORDS = ['add', 'del', 'show', 'reload', 'status', 'import', 'help', 'tunnel', 'session'];

/** Candidates for words[cword] (words[0] is the program), filtered by what is typed so far. */
export async function complete(words: string[], cword: number, src: CompletionSource): Promise<string[]> {
  const cur = words[cword] ?? '';
  const out = await candidates(words.slice(1, cword), src);
  return out.filter((c) => c === FILES || c.startsWith(cur));
}

/** The socket the command line names, if any (the helper asks that daemon). */
export function socketOption(words: string[]): string | undefined {
  const i = words.indexOf('--socket');
  return i >= 0 ? words[i + 1] : undefined;
}

async function safe<T>(fn: () => Promise<T[]> | T[]): Promise<T[]> {
  try { return await fn(); } catch { return []; }
}

async function candidates(before: string[], src: CompletionSource): Promise<string[]> {
  const prev = before[before.length - 1];
  if (prev === '--socket') return [FILES];
  // Options of l2tpctl itself, and the counter flag, may stand anywhere.
  const rest: string[] = [];
  for (let i = 0; i < before.length; i++) {
    if (before[i] === '--socket') { i++; continue; }
    if (GLOBAL_OPTIONS.includes(before[i]) || before[i] === '-json' || STATS_FLAGS.has(before[i])) continue;
    rest.push(before[i]);
  }
  const stats = before.some((w) => STATS_FLAGS.has(w));
  if (rest.length === 0) return [...FIRST_WORDS, ...GLOBAL_OPTIONS];
  const first = rest[0];
  if (first === 'import') return ['--dry-run', FILES];
  let command = commandOf(first);
  let object = objectOf(first);
  if (command === 'reload' || command === 'status' || command === 'help' || command === 'import') return [];
  if (rest.length === 1) return command ? ['tunnel', 'session'] : object ? ['add', 'del', 'show'] : [];
  if (command) object = objectOf(rest[1]); else command = commandOf(rest[1]);
  if (!object || (command !== 'add' && command !== 'del' && command !== 'show')) return [];
  const grammar = commandWords(command, object);
  const find = (w: string) => grammar.find((x) => x.name === w || x.aliases.includes(w));
  // Walk the words after COMMAND OBJECT: keywords and their values.
  const given = new Map<string, string | undefined>();
  let pending: CompletionWord | undefined;
  for (const w of rest.slice(2)) {
    if (pending) { given.set(pending.name, w); pending = undefined; continue; }
    const kw = find(w);
    if (!kw) continue;
    if (kw.takesValue) pending = kw; else given.set(kw.name, undefined);
  }
  if (pending) return values(pending, command, object, given, src);
  return grammar.filter((w) => !given.has(w.name) && !(w.name === '-s' && stats)).map((w) => w.name);
}

async function values(w: CompletionWord, command: 'add' | 'del' | 'show', object: 'tunnel' | 'session',
  given: Map<string, string | undefined>, src: CompletionSource): Promise<string[]> {
  if (w.values) return [...w.values];
  const ids = (xs: number[]) => xs.map(String);
  // IDs that exist: not for the tunnel_id of a new tunnel, nor the session_id of a new session.
  if (w.name === 'tunnel_id' && !(command === 'add' && object === 'tunnel')) return ids(await safe(() => src.tunnelIds()));
  if (w.name === 'session_id' && command !== 'add') {
    const tid = Number(given.get('tunnel_id'));
    return ids(await safe(() => src.sessionIds(Number.isInteger(tid) && tid > 0 ? tid : undefined)));
  }
  if (w.name === 'bridge') return safe(() => src.interfaces(true));
  if (w.name === 'dev') return safe(() => src.interfaces(false));
  return [];
}
