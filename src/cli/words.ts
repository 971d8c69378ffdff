/**
 * Parser of the `ip l2tp` words used by l2tpctl (README "l2tpctl"). Pure: argv in, a command
 * out, or a UsageError naming the word and what it accepts. Value checks are those of
 * control/validate.ts, so the CLI and the daemon refuse exactly the same things.
 *
 * iproute2 tolerances kept: COMMAND OBJECT or OBJECT COMMAND order; `del`/`delete` and
 * `show`/`list`/`lst` and their prefixes (like iproute2's matches()); the short aliases
 * `tid`, `ptid`, `sid`, `psid`; `-s`/`-stats`/`-statistics` for counters.
 */
import { ConfigError } from '../control/errors.js';
import type { SessionConfig, TunnelConfig } from '../control/model.js';
import { DEFAULT_SOCKET } from '../control/api.js';
import { MAX_SESSION_MTU } from '../dataplane/layout.js';
import {
  ID_MAX, MTU_MIN, normalizeSession, OFFSET_MAX, REORDER_TIMEOUT_MAX, normalizeTunnel, parseId, VLAN_MAX, VLAN_MIN,
} from '../control/validate.js';

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

export const USAGE = `Usage: l2tpctl [--socket PATH] [-j|--json] OBJECT COMMAND WORDS...
       l2tpctl add tunnel tunnel_id ID peer_tunnel_id ID [encap {ip|udp}]
                local ADDR remote ADDR [udp_sport PORT] [udp_dport PORT]
                [udp_csum {on|off}] [udp6_csum_tx {on|off}] [udp6_csum_rx {on|off}]
       l2tpctl add session [name NAME] tunnel_id ID session_id ID peer_session_id ID
                [cookie HEX] [peer_cookie HEX] [l2spec_type {none|default}]
                [seq {none|send|recv|both}] [offset N] [peer_offset N]
                [reorder_timeout MS] [mtu MTU] [bridge NAME] [vlan VLAN dev TRUNK]
       l2tpctl del tunnel tunnel_id ID
       l2tpctl del session tunnel_id ID session_id ID
       l2tpctl show tunnel [tunnel_id ID] [-s]
       l2tpctl show session [tunnel_id ID] [session_id ID] [-s]
       l2tpctl reload
       l2tpctl status
       l2tpctl import [--dry-run] FILE...

Where: ID   := 1..${ID_MAX}        PORT := 1..65535     ADDR := IPv4 or IPv6 address
       HEX  := 8 or 16 hex digits    N    := 0..${OFFSET_MAX}       MS   := 0..${REORDER_TIMEOUT_MAX}
       MTU  := ${MTU_MIN}..${MAX_SESSION_MTU}             VLAN := ${VLAN_MIN}..${VLAN_MAX}
       NAME := interface name (1..15 bytes; "l2tpeth%d" allowed for session names)
Environment: L2TPD_SOCKET (default ${DEFAULT_SOCKET})
`;

/** A keyword and the placeholder of its value (undefined for a flag). */
interface Word {
  name: string;
  arg?: string;
  aliases?: string[];
}

const W = {
  tunnel_id: { name: 'tunnel_id', arg: 'ID', aliases: ['tid'] },
  peer_tunnel_id: { name: 'peer_tunnel_id', arg: 'ID', aliases: ['ptid'] },
  session_id: { name: 'session_id', arg: 'ID', aliases: ['sid'] },
  peer_session_id: { name: 'peer_session_id', arg: 'ID', aliases: ['psid'] },
  encap: { name: 'encap', arg: '{ip|udp}' },
  local: { name: 'local', arg: 'ADDR' },
  remote: { name: 'remote', arg: 'ADDR' },
  udp_sport: { name: 'udp_sport', arg: 'PORT' },
  udp_dport: { name: 'udp_dport', arg: 'PORT' },
  udp_csum: { name: 'udp_csum', arg: '{on|off}' },
  udp6_csum_tx: { name: 'udp6_csum_tx', arg: '{on|off}' },
  udp6_csum_rx: { name: 'udp6_csum_rx', arg: '{on|off}' },
  name: { name: 'name', arg: 'NAME' },
  cookie: { name: 'cookie', arg: 'HEX' },
  peer_cookie: { name: 'peer_cookie', arg: 'HEX' },
  l2spec_type: { name: 'l2spec_type', arg: '{none|default}' },
  seq: { name: 'seq', arg: '{none|send|recv|both}' },
  offset: { name: 'offset', arg: 'N' },
  peer_offset: { name: 'peer_offset', arg: 'N' },
  reorder_timeout: { name: 'reorder_timeout', arg: 'MS' },
  mtu: { name: 'mtu', arg: 'N' },
  bridge: { name: 'bridge', arg: 'NAME' },
  vlan: { name: 'vlan', arg: 'ID' },
  dev: { name: 'dev', arg: 'TRUNK' },
  stats: { name: '-s', aliases: ['-stats', '-statistics', '--stats', '--statistics'] },
} satisfies Record<string, Word>;

/** The counter flag and its spellings (l2tpctl accepts them anywhere on the command line). */
export const STATS_FLAGS: ReadonlySet<string> = new Set([W.stats.name, ...W.stats.aliases]);

interface Grammar {
  words: Word[];
  required: string[];
}

const GRAMMAR: Record<'add' | 'del' | 'show', Record<'tunnel' | 'session', Grammar>> = {
  add: {
    tunnel: {
      words: [W.tunnel_id, W.peer_tunnel_id, W.encap, W.local, W.remote, W.udp_sport, W.udp_dport,
        W.udp_csum, W.udp6_csum_tx, W.udp6_csum_rx],
      required: ['tunnel_id', 'peer_tunnel_id', 'local', 'remote'],
    },
    session: {
      words: [W.name, W.tunnel_id, W.session_id, W.peer_session_id, W.cookie, W.peer_cookie, W.l2spec_type,
        W.seq, W.offset, W.peer_offset, W.reorder_timeout, W.mtu, W.bridge, W.vlan, W.dev],
      required: ['tunnel_id', 'session_id', 'peer_session_id'],
    },
  },
  del: {
    tunnel: { words: [W.tunnel_id], required: ['tunnel_id'] },
    session: { words: [W.tunnel_id, W.session_id], required: ['tunnel_id', 'session_id'] },
  },
  show: {
    tunnel: { words: [W.tunnel_id, W.stats], required: [] },
    session: { words: [W.tunnel_id, W.session_id, W.stats], required: [] },
  },
};

/** iproute2 matches(): `word` is a non-empty prefix of `full`. */
function matches(word: string, full: string): boolean {
  return word.length > 0 && full.startsWith(word);
}

function commandOf(word: string): 'add' | 'del' | 'show' | 'reload' | 'status' | 'import' | 'help' | undefined {
  if (matches(word, 'add')) return 'add';
  if (matches(word, 'delete')) return 'del';
  if (matches(word, 'show') || matches(word, 'list') || matches(word, 'lst')) return 'show';
  if (word === 'reload') return 'reload';
  if (word === 'status') return 'status';
  if (word === 'import') return 'import';
  if (word === 'help' || word === '-h' || word === '--help') return 'help';
  return undefined;
}

function objectOf(word: string): 'tunnel' | 'session' | undefined {
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
        if (err.field === 'udp_sport' || err.field === 'udp_dport') {
          throw missingWord(grammar, context, err.field, '; required with encap udp');
        }
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
