/**
 * Parser of the `ip l2tp` words used by l2tpctl (README "l2tpctl"). Pure: argv in, a command
 * out, or a UsageError naming the word and what it accepts. The grammar and USAGE are derived
 * from the word tables (control/tunnel-words.ts, control/session-words.ts) and values are
 * checked by the same normalisation the daemon runs, so the CLI and the daemon accept and refuse
 * exactly the same things.
 *
 * iproute2 tolerances kept: COMMAND OBJECT or OBJECT COMMAND order; `del`/`delete` and
 * `show`/`list`/`lst` and their prefixes (like iproute2's matches()); the short aliases
 * `tid`, `ptid`, `sid`, `psid`; `-s`/`-stats`/`-statistics` for counters.
 */
import { ConfigError } from '../control/errors.js';
import type { SessionConfig, TunnelConfig } from '../control/model.js';
import { DEFAULT_SOCKET } from '../control/api.js';
import { normalizeSession, normalizeTunnel } from '../control/validate.js';
import {
  commandLineOrder, lookup, parseId, placeholders, usageItem, wrapWords, type WordDef,
} from '../control/vocabulary.js';
import { TUNNEL_WORDS } from '../control/tunnel-words.js';
import { SESSION_WORDS } from '../control/session-words.js';

export class UsageError extends Error {
  /** The word at fault, when there is one. */
  readonly word?: string;

  constructor(message: string, word?: string) {
    super(message);
    this.name = 'UsageError';
    if (word !== undefined) this.word = word;
  }
}

export type ParsedCommand =
  | { object: 'tunnel'; command: 'add'; params: TunnelConfig }
  | { object: 'session'; command: 'add'; params: SessionConfig }
  | { object: 'tunnel'; command: 'del'; params: { tunnel_id: number } }
  | { object: 'session'; command: 'del'; params: { tunnel_id: number; session_id: number } }
  | { object: 'tunnel'; command: 'show'; params: { tunnel_id?: number; stats: boolean } }
  | { object: 'session'; command: 'show'; params: { tunnel_id?: number; session_id?: number; stats: boolean } }
  | { object: 'daemon'; command: 'reload' | 'status'; params: Record<string, never> }
  | { object: 'import'; command: 'import'; params: { files: string[]; dryRun: boolean } }
  | { object: 'help'; command: 'help'; params: Record<string, never> };

/** A keyword and the placeholder of its value (undefined for a flag). */
interface Word {
  name: string;
  arg?: string;
  aliases?: readonly string[];
  /** An enum word's values. */
  values?: readonly string[];
}

type AnyWord = WordDef<string, unknown, boolean, unknown>;
const TABLES: Record<'tunnel' | 'session', readonly AnyWord[]> = { tunnel: TUNNEL_WORDS, session: SESSION_WORDS };

function fromTable(w: AnyWord): Word {
  return { name: w.word, arg: w.type.placeholder, aliases: w.aliases, values: w.type.values };
}
const tableWord = (object: 'tunnel' | 'session', name: string): Word => fromTable(lookup(TABLES[object], name)!);
const STATS: Word = { name: '-s', aliases: ['-stats', '-statistics', '--stats', '--statistics'] };

/** The counter flag and its spellings (l2tpctl accepts them anywhere on the command line). */
export const STATS_FLAGS: ReadonlySet<string> = new Set([STATS.name, ...STATS.aliases!]);

interface Grammar {
  words: Word[];
  required: string[];
}

/** `add OBJECT` takes every word of the object's table; its required words must be given. */
function addGrammar(object: 'tunnel' | 'session'): Grammar {
  const words = commandLineOrder(TABLES[object]);
  return { words: words.map(fromTable), required: words.filter((w) => w.required === true).map((w) => w.word) };
}

const GRAMMAR: Record<'add' | 'del' | 'show', Record<'tunnel' | 'session', Grammar>> = {
  add: { tunnel: addGrammar('tunnel'), session: addGrammar('session') },
  del: {
    tunnel: { words: [tableWord('tunnel', 'tunnel_id')], required: ['tunnel_id'] },
    session: { words: [tableWord('session', 'tunnel_id'), tableWord('session', 'session_id')], required: ['tunnel_id', 'session_id'] },
  },
  show: {
    tunnel: { words: [tableWord('tunnel', 'tunnel_id'), STATS], required: [] },
    session: { words: [tableWord('session', 'tunnel_id'), tableWord('session', 'session_id'), STATS], required: [] },
  },
};

/**
 * The command lines l2tpctl takes, each starting with `lead`; long ones wrap at `width` with
 * continuation lines indented by `indent`. USAGE and the README's synopsis are both this.
 */
export function grammarLines(lead: string, indent: number, width: number): string[] {
  const lines: string[] = [];
  for (const object of ['tunnel', 'session'] as const) {
    const items = commandLineOrder(TABLES[object]).map(usageItem).filter((x): x is string => x !== undefined);
    lines.push(...wrapWords(`${lead}add ${object}`, items, indent, width));
  }
  for (const command of ['del', 'show'] as const) {
    for (const object of ['tunnel', 'session'] as const) {
      const g = GRAMMAR[command][object];
      const items = g.words.map((w) => {
        const text = w.arg ? `${w.name} ${w.arg}` : w.name;
        return g.required.includes(w.name) ? text : `[${text}]`;
      });
      lines.push(`${lead}${command} ${object} ${items.join(' ')}`);
    }
  }
  lines.push(`${lead}reload`, `${lead}status`, `${lead}import [--dry-run] FILE...`);
  return lines;
}

function whereLines(): string[] {
  const defs = placeholders([...TUNNEL_WORDS, ...SESSION_WORDS]);
  const width = Math.max(...defs.map(([p]) => p.length));
  return defs.map(([p, means], i) => `${i === 0 ? 'Where: ' : '       '}${p.padEnd(width)} := ${means}`);
}

export const USAGE = [
  'Usage: l2tpctl [--socket PATH] [-j|--json] OBJECT COMMAND WORDS...',
  ...grammarLines('       l2tpctl ', 16, 96),
  '',
  ...whereLines(),
  `Environment: L2TPD_SOCKET (default ${DEFAULT_SOCKET})`,
  '',
].join('\n');

/** A word of a command line as shell completion offers it. */
export interface CompletionWord {
  name: string;
  aliases: readonly string[];
  takesValue: boolean;
  /** The values of an enum word. */
  values?: readonly string[];
}

/** The words `command object` takes (completion reads the grammar the parser uses). */
export function commandWords(command: 'add' | 'del' | 'show', object: 'tunnel' | 'session'): CompletionWord[] {
  return GRAMMAR[command][object].words.map((w) => ({
    name: w.name, aliases: w.aliases ?? [], takesValue: w.arg !== undefined,
    ...(w.values ? { values: w.values } : {}),
  }));
}

/** iproute2 matches(): `word` is a non-empty prefix of `full`. */
function matches(word: string, full: string): boolean {
  return word.length > 0 && full.startsWith(word);
}

export function commandOf(word: string): 'add' | 'del' | 'show' | 'reload' | 'status' | 'import' | 'help' | undefined {
  if (matches(word, 'add')) return 'add';
  if (matches(word, 'delete')) return 'del';
  if (matches(word, 'show') || matches(word, 'list') || matches(word, 'lst')) return 'show';
  if (word === 'reload') return 'reload';
  if (word === 'status') return 'status';
  if (word === 'import') return 'import';
  if (word === 'help' || word === '-h' || word === '--help') return 'help';
  return undefined;
}

export function objectOf(word: string): 'tunnel' | 'session' | undefined {
  if (word === 'tunnel' || word === 'session') return word;
  return undefined;
}

function describe(w: Word): string {
  return w.arg ? `${w.name} ${w.arg}` : w.name;
}

/** `import [--dry-run] FILE...` (FILE `-` is standard input). */
function parseImport(args: string[]): ParsedCommand {
  const files: string[] = [];
  let dryRun = false;
  for (const a of args) {
    if (a === '--dry-run') dryRun = true;
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`import: unknown option "${a}"; expected --dry-run or FILE`, a);
    else files.push(a);
  }
  if (files.length === 0) throw new UsageError('import: missing FILE (an ip l2tp script, a .netdev or .network file, or - for standard input)');
  return { object: 'import', command: 'import', params: { files, dryRun } };
}

/** Collect keyword values: word → value string (flags → ''). */
function collect(words: string[], grammar: Grammar, context: string, checkRequired = true): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < words.length; i++) {
    const token = words[i];
    const w = grammar.words.find((x) => x.name === token || x.aliases?.includes(token));
    if (!w) {
      const expected = grammar.words.map((x) => x.name).join(', ');
      throw new UsageError(
        expected
          ? `unknown word "${token}" for "${context}"; expected one of: ${expected}`
          : `unexpected word "${token}": "${context}" takes no words`,
        token);
    }
    if (out.has(w.name)) throw new UsageError(`${w.name}: given twice`, w.name);
    if (w.arg === undefined) {
      out.set(w.name, '');
      continue;
    }
    if (i + 1 >= words.length) throw new UsageError(`${w.name}: missing value; expected ${describe(w)}`, w.name);
    out.set(w.name, words[++i]);
  }
  if (checkRequired) {
    for (const name of grammar.required) {
      if (!out.has(name)) throw missingWord(grammar, context, name);
    }
  }
  return out;
}

function missingWord(grammar: Grammar, context: string, name: string, note = ''): UsageError {
  const w = grammar.words.find((x) => x.name === name) as Word;
  return new UsageError(`${context}: missing required word "${name}" (${describe(w)}${note})`, name);
}

function usageFromConfig(err: unknown): never {
  if (err instanceof ConfigError) throw new UsageError(err.message, err.field);
  throw err;
}

function id(field: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseId(field, value);
  } catch (err) {
    return usageFromConfig(err);
  }
}

/** Turn collected word values into the JSON shape validate.ts takes (strings are fine there). */
function toObject(values: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of values) out[k] = v;
  return out;
}

/**
 * Parse `OBJECT COMMAND WORDS...` (or `COMMAND OBJECT WORDS...`), `reload`, `status`, `help`.
 * Throws UsageError naming the word and what it accepts.
 */
export function parseCommand(argv: string[]): ParsedCommand {
  if (argv.length === 0) throw new UsageError('missing command; expected add, del, show, reload, status or import');
  const [first, second, ...rest] = argv;
  let command = commandOf(first);
  let object = second === undefined ? undefined : objectOf(second);
  if (command === undefined && objectOf(first) !== undefined) {
    // OBJECT COMMAND order.
    object = objectOf(first);
    command = second === undefined ? undefined : commandOf(second);
    if (command === undefined) {
      throw new UsageError(second === undefined
        ? `${first}: missing command; expected add, del or show`
        : `unknown command "${second}" for "${first}"; expected add, del or show`, second);
    }
  } else if (command === undefined) {
    throw new UsageError(`unknown command "${first}"; expected add, del, show, reload, status or import`, first);
  }
  if (command === 'help') return { object: 'help', command: 'help', params: {} };
  if (command === 'import') return parseImport(argv.slice(1));
  if (command === 'reload' || command === 'status') {
    if (argv.length > 1) throw new UsageError(`unexpected word "${argv[1]}": "${command}" takes no words`, argv[1]);
    return { object: 'daemon', command, params: {} };
  }
  if (object === undefined) {
    throw new UsageError(second === undefined
      ? `${command}: missing object; expected tunnel or session`
      : `unknown object "${second}" for "${command}"; expected tunnel or session`, second);
  }
  const context = `${command} ${object}`;
  const grammar = GRAMMAR[command][object];
  // For add, values are checked in word order by validate.ts before "missing word" errors.
  const values = collect(rest, grammar, context, command !== 'add');
  if (command === 'add') {
    try {
      return object === 'tunnel'
        ? { object, command, params: normalizeTunnel(toObject(values)) }
        : { object, command, params: normalizeSession(toObject(values)) };
    } catch (err) {
      if (err instanceof ConfigError && err.value === undefined) {
        if (grammar.required.includes(err.field)) throw missingWord(grammar, context, err.field);
        // A word required only in some cases (udp_sport with encap udp) says when.
        const req = lookup(TABLES[object], err.field)?.required;
        if (typeof req === 'object' && req.note !== undefined) throw missingWord(grammar, context, err.field, `; ${req.note}`);
      }
      usageFromConfig(err);
    }
  }
  const tunnel_id = id('tunnel_id', values.get('tunnel_id'));
  const session_id = id('session_id', values.get('session_id'));
  const stats = values.has('-s');
  if (command === 'del') {
    return object === 'tunnel'
      ? { object, command, params: { tunnel_id: tunnel_id as number } }
      : { object, command, params: { tunnel_id: tunnel_id as number, session_id: session_id as number } };
  }
  if (object === 'tunnel') {
    return { object, command, params: tunnel_id === undefined ? { stats } : { tunnel_id, stats } };
  }
  const params: { tunnel_id?: number; session_id?: number; stats: boolean } = { stats };
  if (tunnel_id !== undefined) params.tunnel_id = tunnel_id;
  if (session_id !== undefined) params.session_id = session_id;
  return { object, command, params };
}
