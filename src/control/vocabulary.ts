/**
 * The machinery of the word tables. A word (`tunnel_id`, `cookie`, ...) is defined once, in
 * tunnel-words.ts or session-words.ts, with everything about it: its value type (parser, range,
 * CLI placeholder), aliases, whether it is required and where it applies, its default, its help
 * text and how it compiles into what the data plane is given. This file derives from such a
 * table: the config object's TypeScript type, validation with defaults applied once, the
 * config file's field order, and text for USAGE, the README, the man pages and shell
 * completion. The CLI grammar (cli/words.ts) and `show` (cli/format.ts) read the same tables.
 *
 * Input decisions, for every word: numbers are JSON numbers or decimal strings ("3000"), nothing
 * else (no hex, no sign); enum words are case-insensitive and stored lowercase; on/off also take
 * booleans. Every refusal is a ConfigError naming the field, the value and what is allowed.
 */
import { isIP } from 'node:net';
import { ConfigError, showValue } from './errors.js';
import { IFNAME_ALLOWED, IFNAME_CONTROL, ifnameProblem } from '../netlink/ifname.js';

// ---------------------------------------------------------------------------------------------
// Value types: what a word's value is, how it is written on the command line, how it is parsed.

export interface ValueType<V> {
  /** How the value is written in USAGE and man pages: `ID`, `{on|off}`. */
  readonly placeholder: string;
  /** What the placeholder stands for, in USAGE's "Where:" lines (absent for enum words). */
  readonly means?: string;
  /** What is allowed, for error messages: "expected <allowed>". */
  readonly allowed: string;
  /** Enum words: every value (shell completion, man pages). */
  readonly values?: readonly string[];
  /** The normalised value, or a ConfigError naming `field`. */
  parse(field: string, value: unknown): V;
}

/** An integer in [min, max], given as a JSON number or a decimal string. */
export function parseUint(field: string, value: unknown, min: number, max: number, allowed?: string): number {
  const what = allowed ?? `an integer ${min}..${max}`;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^[0-9]{1,16}$/.test(value)) n = Number(value);
  else throw new ConfigError(field, value, what);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(field, value, what);
  return n;
}

/** The integers min..max, written `placeholder`; `unit` is added to what is allowed ("milliseconds"). */
export function integer(placeholder: string, min: number, max: number, unit?: string): ValueType<number> {
  const allowed = `an integer ${min}..${max}${unit ? ` (${unit})` : ''}`;
  return {
    placeholder, means: `${min}..${max}`, allowed,
    parse: (field, value) => parseUint(field, value, min, max, allowed),
  };
}

/** One of `values`, case-insensitive, returned lowercase. */
export function parseEnum<T extends string>(field: string, value: unknown, values: readonly T[]): T {
  if (typeof value === 'string') {
    const v = value.toLowerCase();
    if ((values as readonly string[]).includes(v)) return v as T;
  }
  throw new ConfigError(field, value, values.join(' or '));
}

/** An enum word; `booleans` maps true/false to the first two values (on/off). */
export function oneOf<const T extends string>(values: readonly T[], booleans = false): ValueType<T> {
  return {
    placeholder: `{${values.join('|')}}`, allowed: values.join(' or '), values,
    parse: (field, value) => {
      if (booleans && typeof value === 'boolean') return value ? values[0] : values[1];
      return parseEnum(field, value, values);
    },
  };
}

export type OnOff = 'on' | 'off';
export const ON_OFF = oneOf(['on', 'off'], true);

export const ID_MAX = 0xffffffff;
/** Tunnel and session IDs: non-zero, 32 bits. */
export const ID = integer('ID', 1, ID_MAX);
export const PORT = integer('PORT', 1, 65535);

export function parseId(field: string, value: unknown): number {
  return ID.parse(field, value);
}

/**
 * An IPv4 or IPv6 unicast literal; IPv6 comes back in canonical (RFC 5952) form. Refused: a zone
 * index, the wildcard, multicast, the limited broadcast 255.255.255.255 (a tunnel has one peer)
 * and IPv4-mapped IPv6 (an IPv6 tunnel socket is IPv6-only: write the IPv4 address). Subnet
 * broadcasts depend on the host's prefixes and are refused when the tunnel starts.
 */
export function parseAddress(field: string, value: unknown): string {
  const allowed = 'an IPv4 or IPv6 address';
  if (typeof value !== 'string') throw new ConfigError(field, value, allowed);
  const family = isIP(value);
  if (family === 0) throw new ConfigError(field, value, allowed);
  if (value.includes('%')) {
    throw new ConfigError(field, value, allowed, `${field} ${value}: IPv6 zone indexes are not supported; expected ${allowed} without %zone`);
  }
  let addr = value;
  if (family === 6) addr = new URL(`http://[${value}]`).hostname.slice(1, -1);
  const unicast = 'a unicast address';
  if (addr === '0.0.0.0' || addr === '::') {
    throw new ConfigError(field, value, 'a specific address', `${field} ${value}: expected a specific address, not the wildcard`);
  }
  if (family === 4) {
    const first = Number(addr.split('.')[0]);
    if (first >= 224 && first <= 239) throw new ConfigError(field, value, unicast, `${field} ${value}: a multicast address; expected ${unicast}`);
    if (addr === '255.255.255.255') throw new ConfigError(field, value, unicast, `${field} ${value}: the broadcast address; expected ${unicast}`);
  } else {
    if (addr.startsWith('ff')) throw new ConfigError(field, value, unicast, `${field} ${value}: a multicast address; expected ${unicast}`);
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(addr);
    if (mapped) {
      const hi = parseInt(mapped[1], 16);
      const lo = parseInt(mapped[2], 16);
      const v4 = `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
      throw new ConfigError(field, value, 'an IPv4 address written as IPv4, or a native IPv6 address',
        `${field} ${value}: an IPv4-mapped IPv6 address; write the IPv4 address ${v4} instead`);
    }
  }
  return addr;
}

export const ADDR: ValueType<string> = {
  placeholder: 'ADDR', means: 'IPv4 or IPv6 address', allowed: 'an IPv4 or IPv6 address', parse: parseAddress,
};

/** The address family of a validated address literal. */
export function familyOf(address: string): 4 | 6 {
  return isIP(address) === 6 ? 6 : 4;
}

/** 8 or 16 hex digits, stored lowercase. */
export const HEX: ValueType<string> = {
  placeholder: 'HEX', means: '8 or 16 hex digits', allowed: '8 or 16 hex digits',
  parse: (field, value) => {
    if (typeof value === 'string' && /^(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{16})$/.test(value)) return value.toLowerCase();
    throw new ConfigError(field, value, '8 or 16 hex digits');
  },
};

/** What an interface name may be, for messages; `pattern`: the session's own name, which may hold one `%d`. */
function ifnameAllowed(pattern: boolean): string {
  return pattern ? `an interface name of ${IFNAME_ALLOWED} (one %d allowed)` : `an interface name of ${IFNAME_ALLOWED}, without "%"`;
}

/**
 * A Linux interface name, checked as the kernel checks it (netlink/ifname.ts), control characters
 * refused too. With `pattern`, one `%d` is allowed (the kernel numbers it: `l2tpeth%d`); any
 * other '%' is refused.
 */
export function parseIfname(field: string, value: unknown, pattern = false): string {
  const allowed = ifnameAllowed(pattern);
  if (typeof value !== 'string') throw new ConfigError(field, value, allowed);
  const problem = ifnameProblem(value);
  if (problem === IFNAME_CONTROL) throw new ConfigError(field, value, allowed, `${field} ${showValue(value)}: ${problem}; expected ${allowed}`);
  if (problem !== undefined) throw new ConfigError(field, value, allowed);
  if (value.includes('%')) {
    const rest = value.replace('%d', '');
    if (!pattern || rest.includes('%')) throw new ConfigError(field, value, allowed);
  }
  return value;
}

/** An interface name, written `placeholder`; `pattern`: `%d` allowed (the session's own name). */
export function ifname(placeholder: string, means: string, pattern = false): ValueType<string> {
  return { placeholder, means, allowed: ifnameAllowed(pattern), parse: (field, value) => parseIfname(field, value, pattern) };
}

// ---------------------------------------------------------------------------------------------
// Words.

/** The object being validated: the words normalised so far (table order), and the raw input. */
export type Draft = Record<string, unknown>;

export interface WordDef<K extends string = string, V = unknown, A extends boolean = boolean, Plan = never> {
  readonly word: K;
  /** Other spellings on the command line (`tid`); the config file and the API use `word`. */
  readonly aliases?: readonly string[];
  readonly type: ValueType<V>;
  /** Every normalised object has this word (it is required, or has a default that always applies). */
  readonly always: A;
  /**
   * Must be given: always (true), or when `when` holds for the words before it. `note` says
   * when (`required with encap udp`); `missing` replaces the whole message.
   */
  readonly required?: true | {
    when(o: Draft, input: Draft): boolean;
    note?: string;
    missing?(o: Draft, input: Draft): ConfigError;
  };
  /** Means something only when `test` holds for the words before it; given otherwise, `refuse` says why. */
  readonly appliesWhen?: { test(o: Draft): boolean; refuse(o: Draft, value: unknown): ConfigError };
  /** Filled in when absent (and the word applies): applied here, once, at the boundary. */
  readonly default?: NoInfer<V>;
  /** The default as users read it: `udp`, `required`, `none`, `the kernel's`. */
  readonly defaultText: string;
  /** One paragraph: what the word does in l2tpd (README, man pages). */
  readonly help: string;
  /** Checks against the words before it, once the value is parsed; `raw` is what was given. */
  check?(value: V, o: Draft, raw: unknown): void;
  /** How USAGE writes it, when not `word PLACEHOLDER`; null: written with another word (dev with vlan). */
  readonly usage?: string | null;
  /** Listed before the other words on the command line (USAGE, CLI messages), as `ip l2tp help` puts `[name NAME]` first. */
  readonly lead?: true;
  /** What the word puts into what the data plane (or the socket) is given. */
  compile?(value: V, plan: Plan): void;
}

/**
 * The word definer of a table whose words compile into `Plan`. Its const type parameters keep each
 * word's name, value type and `always` as literals, which ConfigOf turns into the config type.
 */
export function wordsFor<Plan>() {
  return <const K extends string, V, const A extends boolean>(def: WordDef<K, V, A, Plan>): WordDef<K, V, A, Plan> => def;
}

type ValueOf<D> = D extends WordDef<string, infer V, boolean, infer _P> ? V : never;
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The normalised object a table describes: words that are always present are required keys. */
export type ConfigOf<W extends readonly WordDef<string, any, boolean, any>[]> = Simplify<
  { -readonly [D in W[number] as D['always'] extends true ? D['word'] : never]: ValueOf<D> }
  & { -readonly [D in W[number] as D['always'] extends true ? never : D['word']]?: ValueOf<D> }
>;

/** One object's table: its words in config order, the lines `show` prints, and a check across words. */
export interface WordTable<W extends readonly WordDef<string, any, boolean, any>[], View> {
  /** `tunnel`, `session`: in messages. */
  readonly object: string;
  readonly words: W;
  /** The lines of `show`, in order (iproute2's layout first); each names the words it shows. */
  readonly show: readonly ShowLine<View>[];
  /** Checks across words, after every word is valid. */
  check?(o: Draft): void;
}

export interface ShowLine<View> {
  readonly words: readonly string[];
  line(view: View): string | undefined;
}

/** The words of a table by name and by alias. */
export function lookup(words: readonly WordDef<string, any, boolean, any>[], token: string): WordDef<string, any, boolean, any> | undefined {
  return words.find((w) => w.word === token || w.aliases?.includes(token));
}

function isObject(v: unknown): v is Draft {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function rejectUnknown(what: string, input: Draft, known: readonly string[]): void {
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) {
      throw new ConfigError(key, input[key], `one of: ${known.join(', ')}`,
        `unknown field "${key}" in ${what}; expected one of: ${known.join(', ')}`);
    }
  }
}

/**
 * Validate `input` against a table and fill in defaults: the one place defaults are applied.
 * Words are taken in table order, so a word's checks see the words before it.
 */
export function normalize<W extends readonly WordDef<string, any, boolean, any>[], View>(
  table: WordTable<W, View>, input: unknown,
): ConfigOf<W> {
  if (!isObject(input)) throw new ConfigError(table.object, input, `an object with ${table.object} fields`);
  rejectUnknown(table.object, input, table.words.map((w) => w.word));
  const o: Draft = {};
  for (const w of table.words) {
    const raw = input[w.word];
    const applies = w.appliesWhen ? w.appliesWhen.test(o) : true;
    if (raw !== undefined && !applies) throw w.appliesWhen!.refuse(o, raw);
    if (raw === undefined) {
      const req = w.required;
      if (req === true || (req !== undefined && applies && req.when(o, input))) {
        if (req !== true && req.missing) throw req.missing(o, input);
        const note = req !== true && req.note ? ` (${req.note})` : '';
        throw new ConfigError(w.word, undefined, `${w.type.allowed}${note}`);
      }
      if (applies && w.default !== undefined) o[w.word] = w.default;
      continue;
    }
    const value = w.type.parse(w.word, raw);
    w.check?.(value, o, raw);
    o[w.word] = value;
  }
  table.check?.(o);
  return o as ConfigOf<W>;
}

/** Run every present word's compile into `plan`, in table order. */
export function compileWords<Plan>(words: readonly WordDef<string, any, boolean, Plan>[], o: object, plan: Plan): Plan {
  const src = o as Draft;
  for (const w of words) if (src[w.word] !== undefined) w.compile?.(src[w.word], plan);
  return plan;
}

/** Rebuild an object with keys in the table's order (the config file's field order). */
export function inWordOrder<T extends object>(obj: T, words: readonly WordDef<string, any, boolean, any>[]): T {
  const src = obj as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const w of words) if (src[w.word] !== undefined) out[w.word] = src[w.word];
  for (const k of Object.keys(src)) if (!(k in out) && src[k] !== undefined) out[k] = src[k];
  return out as T;
}

// ---------------------------------------------------------------------------------------------
// Text derived from the tables: USAGE and the README.

/** A table's words in command-line order: the `lead` words first, then table order. */
export function commandLineOrder<W extends WordDef<string, any, boolean, any>>(words: readonly W[]): W[] {
  return [...words.filter((w) => w.lead), ...words.filter((w) => !w.lead)];
}

/** `word PLACEHOLDER`, bracketed unless always required. */
export function usageItem(w: WordDef<string, any, boolean, any>): string | undefined {
  if (w.usage === null) return undefined;
  const text = w.usage ?? `${w.word} ${w.type.placeholder}`;
  return w.required === true ? text : `[${text}]`;
}

/** `head` and the items, wrapped at `width` columns; continuation lines are indented by `indent`. */
export function wrapWords(head: string, items: readonly string[], indent: number, width: number): string[] {
  const lines: string[] = [];
  let line = head;
  let hasItem = false;
  for (const item of items) {
    if (hasItem && line.length + 1 + item.length > width) {
      lines.push(line);
      line = ' '.repeat(indent) + item;
    } else {
      line = hasItem || !line.endsWith(' ') ? `${line} ${item}` : line + item;
    }
    hasItem = true;
  }
  lines.push(line);
  return lines;
}

/** The "Where:" definitions of the placeholders the words use, each once, in order of first use. */
export function placeholders(words: readonly WordDef<string, any, boolean, any>[]): Array<[string, string]> {
  const seen = new Map<string, string>();
  for (const w of words) {
    const t = w.type;
    if (t.means !== undefined && !seen.has(t.placeholder)) seen.set(t.placeholder, t.means);
  }
  return [...seen];
}

/** The README's table of words: `| word | default | meaning in l2tpd |`, one row per word. */
export function wordTableMarkdown(words: readonly WordDef<string, any, boolean, any>[]): string {
  const rows = words.map((w) => {
    const names = [w.word, ...(w.aliases ?? [])].map((n) => `\`${n}\``).join(', ');
    return `| ${names} | ${w.defaultText} | ${w.help} |`;
  });
  return ['| word | default | meaning in l2tpd |', '|---|---|---|', ...rows].join('\n');
}
