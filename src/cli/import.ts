/**
 * `l2tpctl import`: an existing setup turned into l2tpd tunnels and sessions. Reads `ip l2tp`
 * shell scripts (with the `ip link set` lines that go with them) and systemd-networkd
 * `.netdev` files with [L2TP] and [L2TPSession] sections, plus the `.network` files that put
 * their sessions in a bridge. Pure: texts in, a plan out.
 *
 * Every tunnel and session goes through the CLI's own grammar (parseCommand) and then the
 * config validation, so import accepts and refuses exactly what l2tpctl and the daemon do.
 * Lines it cannot map are problems that name their file and line; a plan with problems is not
 * applied. Lines that need nothing in l2tpd (`modprobe l2tp_eth`, `ip link set l2tpeth0 up`)
 * are accepted and, where that is not obvious, noted.
 */
import { ConflictError } from '../control/errors.js';
import type { Config, SessionConfig, TunnelConfig } from '../control/model.js';
import { checkAddSession, checkAddTunnel, emptyConfig } from '../control/validate.js';
import { parseCommand, UsageError } from './words.js';

export interface SourceFile {
  name: string;
  text: string;
}

/** A problem or a note, at a line of a file. */
export interface Finding {
  file: string;
  line: number;
  message: string;
}

export interface ImportPlan {
  /** What would be added, in the config file's shape. */
  config: Config;
  /** Where each entry was defined, parallel to config.tunnels and config.sessions. */
  origins: { tunnels: Finding[]; sessions: Finding[] };
  notes: Finding[];
  problems: Finding[];
}

export function formatFinding(f: Finding): string {
  return `${f.file}:${f.line}: ${f.message}`;
}

/** A word as read, with its line; `origin` is the networkd `Key=Value` it came from. */
interface Token {
  text: string;
  line: number;
  origin?: string;
}

/** One `add tunnel` or `add session`, as words with their lines. */
interface ObjectCommand {
  kind: 'tunnel' | 'session';
  file: string;
  line: number;
  tokens: Token[];
  /** networkd: the key a word comes from, for "Key= is missing". */
  keys?: Record<string, string>;
  /** Its words were refused already (the problem is recorded): not parsed again. */
  refused?: boolean;
}

/** `ip link set NAME ...` (or a networkd .network file): settings for an interface. */
interface LinkSettings {
  file: string;
  line: number;
  name: Token;
  up: boolean;
  mtu?: Token;
  master?: Token;
}

/** `ip link add NAME type bridge|vlan`: an interface l2tpd creates itself when a session needs it. */
interface LinkAdd {
  file: string;
  line: number;
  name: Token;
  kind: 'bridge' | 'vlan';
  trunk?: Token;
  vlan?: Token;
}

class Collector {
  readonly objects: ObjectCommand[] = [];
  readonly linkSets: LinkSettings[] = [];
  readonly linkAdds: LinkAdd[] = [];
  readonly notes: Finding[] = [];
  readonly problems: Finding[] = [];

  note(file: string, line: number, message: string): void { this.notes.push({ file, line, message }); }
  problem(file: string, line: number, message: string): void { this.problems.push({ file, line, message }); }
}

// ---------------------------------------------------------------------------------------------
// Shell scripts.

/** Kernel modules of the kernel's L2TP data path: l2tpd needs none of them. */
const L2TP_MODULES = new Set(['l2tp_core', 'l2tp_netlink', 'l2tp_eth', 'l2tp_ip', 'l2tp_ip6', 'l2tp_ppp']);
/** `ip` options that change nothing for l2tp/link commands. */
const IP_FLAGS = new Set(['-4', '-6', '-0', '-s', '-stats', '-statistics', '-d', '-details', '-j', '-json',
  '-p', '-pretty', '-c', '-color', '-h', '-human', '-human-readable', '-br', '-brief']);
const SHELL_SPECIAL = /[&|<>()`]/;

interface ShellCommand {
  line: number;
  tokens: Token[];
}

/**
 * Split a POSIX-shell-like script into commands of literal words: `\` line continuations,
 * comments, quotes, `;`. Anything that would need a shell to run (variables, pipes,
 * redirections, control flow) is a problem: import reads literal commands only.
 */
function shellCommands(file: string, text: string, out: Collector): ShellCommand[] {
  const commands: ShellCommand[] = [];
  let tokens: Token[] = [];
  let word: Token | null = null;
  let quote: '"' | "'" | null = null;
  let broken = false;
  const endWord = () => { if (word) tokens.push(word); word = null; };
  const endCommand = () => {
    endWord();
    if (tokens.length && !broken) commands.push({ line: tokens[0].line, tokens });
    tokens = [];
    broken = false;
  };
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    const lineNo = n + 1;
    let continued = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quote) {
        if (c === quote) quote = null;
        else if (quote === '"' && c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) word!.text += line[++i];
        else if (quote === '"' && (c === '$' || c === '`')) {
          out.problem(file, lineNo, `"${c}": shell expansions are not imported; write the value itself`);
          broken = true;
          word!.text += c;
        } else word!.text += c;
        continue;
      }
      if (c === '\\') {
        if (i === line.length - 1) { continued = true; break; }
        word ??= { text: '', line: lineNo };
        word.text += line[++i];
        continue;
      }
      if (c === ' ' || c === '\t' || c === '\r') { endWord(); continue; }
      if (c === '#' && !word) {
        const rest = line.slice(i + 1).trim();
        if (/^(\S*[#$]\s*)?(sudo\s+)?(ip\s+(-\S+\s+)*(l2tp|link)|l2tpctl)\s/.test(rest)) {
          out.note(file, lineNo, `a comment that reads like a command, not imported: ${rest}`);
        }
        break;
      }
      if (c === ';') { endCommand(); continue; }
      if (c === '$' || SHELL_SPECIAL.test(c)) {
        out.problem(file, lineNo, `"${c}": shell ${c === '$' ? 'expansions are' : 'syntax is'} not imported; write literal commands`);
        broken = true;
      }
      if (c === '"' || c === "'") { word ??= { text: '', line: lineNo }; quote = c; continue; }
      word ??= { text: '', line: lineNo };
      word.text += c;
    }
    if (quote && word) { word.text += '\n'; continue; }
    if (!continued) endCommand();
  }
  if (quote) out.problem(file, lines.length, `unterminated ${quote} quote`);
  endCommand();
  return commands;
}

function readScript(file: string, text: string, out: Collector): void {
  for (const cmd of shellCommands(file, text, out)) {
    let toks = cmd.tokens;
    // A copied prompt (`site-A:# ip l2tp ...`, as in ip-l2tp(8)'s examples) and sudo.
    if (toks.length > 1 && /[#$]$/.test(toks[0].text) && /^(ip|sudo|l2tpctl|modprobe)$/.test(toks[1].text)) toks = toks.slice(1);
    if (toks[0]?.text === 'sudo') toks = toks.slice(1);
    const head = toks[0];
    if (!head) continue;
    if (head.text === 'ip') readIp(file, cmd.line, toks.slice(1), out);
    else if (head.text === 'l2tpctl') readL2tpctl(file, cmd.line, toks.slice(1), out);
    else if (head.text === 'modprobe') {
      const mods = toks.slice(1).filter((x) => !x.text.startsWith('-'));
      const other = mods.filter((m) => !L2TP_MODULES.has(m.text));
      if (other.length) out.problem(file, cmd.line, `modprobe ${other.map((m) => m.text).join(' ')}: not an L2TP setting; keep it in the host's configuration`);
      else out.note(file, cmd.line, `modprobe ${mods.map((m) => m.text).join(' ')}: not needed, l2tpd does not use the kernel's L2TP`);
    } else if (head.text === 'set' && toks.slice(1).every((x) => /^[-+]/.test(x.text) || x.text === 'pipefail')) {
      // `set -e` and friends: shell options, nothing to import.
    } else {
      out.problem(file, head.line, `"${head.text}": not an ip l2tp, ip link or l2tpctl command`);
    }
  }
}

function readIp(file: string, line: number, toks: Token[], out: Collector): void {
  let i = 0;
  for (; i < toks.length && toks[i].text.startsWith('-'); i++) {
    const opt = toks[i].text;
    if (IP_FLAGS.has(opt)) continue;
    if (opt === '-f' || opt === '-family') { i++; continue; }
    if (opt === '-n' || opt === '-netns') {
      out.problem(file, toks[i].line, `ip ${opt}: l2tpd creates its interfaces in its own network namespace; run l2tpd there instead`);
    } else {
      out.problem(file, toks[i].line, `ip ${opt}: not an option import understands`);
    }
    return;
  }
  const object = toks[i];
  const rest = toks.slice(i + 1);
  if (object?.text === 'l2tp') readL2tpWords(file, line, rest, out);
  else if (object?.text === 'link') readIpLink(file, line, rest, out);
  else out.problem(file, object?.line ?? line, `ip ${object?.text ?? ''}: only ip l2tp and ip link commands are imported`);
}

function readL2tpctl(file: string, line: number, toks: Token[], out: Collector): void {
  let i = 0;
  while (i < toks.length && toks[i].text.startsWith('-')) i += toks[i].text === '--socket' ? 2 : 1;
  readL2tpWords(file, line, toks.slice(i), out);
}

/** The words after `ip l2tp` or `l2tpctl`. */
function readL2tpWords(file: string, line: number, toks: Token[], out: Collector): void {
  let cmd;
  try {
    cmd = parseCommand(toks.map((x) => x.text));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.problem(file, tokenLine(toks, err.word, line), err.message);
    // Kept, so that the ip link lines naming it are not reported a second time.
    const kind = toks.slice(0, 2).map((x) => x.text).find((w) => w === 'tunnel' || w === 'session');
    if (kind) out.objects.push({ kind, file, line, tokens: toks, refused: true });
    return;
  }
  if (cmd.command === 'add') {
    out.objects.push({ kind: cmd.object, file, line, tokens: toks });
  } else if (cmd.command === 'show' || cmd.command === 'status') {
    out.note(file, line, `${cmd.command}: changes nothing, skipped`);
  } else {
    out.problem(file, line, `${toks.map((x) => x.text).join(' ')}: import only adds tunnels and sessions`);
  }
}

function readIpLink(file: string, line: number, toks: Token[], out: Collector): void {
  const sub = toks[0]?.text;
  if (sub === 'set') {
    let i = 1;
    if (toks[i]?.text === 'dev') i++;
    const name = toks[i++];
    if (!name) { out.problem(file, line, 'ip link set: missing interface name'); return; }
    const s: LinkSettings = { file, line, name, up: false };
    for (; i < toks.length; i++) {
      const w = toks[i];
      if (w.text === 'up') s.up = true;
      else if ((w.text === 'mtu' || w.text === 'master') && toks[i + 1]) s[w.text] = toks[++i];
      else {
        out.problem(file, w.line, `ip link set ${name.text} ${w.text}: import maps only up, mtu and master (to the session words mtu and bridge)`);
        return;
      }
    }
    out.linkSets.push(s);
  } else if (sub === 'add') {
    // ip link add [link DEV] [name] NAME [link DEV] type bridge|vlan [id ID]
    let name: Token | undefined;
    let trunk: Token | undefined;
    let vlan: Token | undefined;
    let kind: string | undefined;
    for (let i = 1; i < toks.length; i++) {
      const w = toks[i];
      if (w.text === 'link' && toks[i + 1]) trunk = toks[++i];
      else if (w.text === 'name' && toks[i + 1]) name = toks[++i];
      else if (w.text === 'type' && toks[i + 1]) kind = toks[++i].text;
      else if (w.text === 'id' && kind === 'vlan' && toks[i + 1]) vlan = toks[++i];
      else if (!name && kind === undefined) name = w;
      else {
        out.problem(file, w.line, `ip link add ... ${w.text}: import maps only "ip link add NAME type bridge" and "ip link add link TRUNK name TRUNK.ID type vlan id ID"`);
        return;
      }
    }
    if (!name || (kind !== 'bridge' && kind !== 'vlan') || (kind === 'vlan' && (!trunk || !vlan)) || (kind === 'bridge' && trunk)) {
      out.problem(file, line, `ip link add: only a bridge, or a VLAN interface of a trunk, can be mapped (l2tpd creates those for its sessions)`);
      return;
    }
    out.linkAdds.push({ file, line, name, kind, trunk, vlan });
  } else if (sub === 'show' || sub === 'list' || sub === 'ls') {
    out.note(file, line, `ip link ${sub}: changes nothing, skipped`);
  } else {
    out.problem(file, toks[0]?.line ?? line, `ip link ${sub ?? ''}: only ip link set and ip link add are imported`);
  }
}

// ---------------------------------------------------------------------------------------------
// systemd-networkd (systemd.netdev(5), systemd.network(5)).

interface UnitSection {
  name: string;
  line: number;
  entries: Array<{ key: string; value: string; line: number }>;
}

/** systemd's unit-file syntax: [Section], Key=Value, # and ; comments, trailing-\ continuations. */
function unitSections(file: string, text: string, out: Collector): UnitSection[] {
  const sections: UnitSection[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    let line = lines[n].trim();
    while (line.endsWith('\\') && n + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++n].trim()}`;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) { sections.push({ name: header[1], line: lineNo, entries: [] }); continue; }
    const eq = line.indexOf('=');
    if (eq <= 0 || sections.length === 0) {
      out.problem(file, lineNo, `${line}: expected [Section] or Key=Value`);
      continue;
    }
    sections[sections.length - 1].entries.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: lineNo });
  }
  return sections;
}

/** systemd's boolean words (parse_boolean()). */
function unitBoolean(value: string): boolean | undefined {
  if (/^(1|yes|y|true|t|on)$/i.test(value)) return true;
  if (/^(0|no|n|false|f|off)$/i.test(value)) return false;
  return undefined;
}

/**
 * [L2TP] keys and the tunnel words they become. The checksum keys are booleans: UDPChecksum=
 * turns the IPv4 checksum on; UDP6ZeroChecksumTx=/Rx= (as systemd.netdev(5) spells them) turn
 * the IPv6 checksum *off*. networkd's parser reads UDPCheckSum=, UDP6CheckSumTx= and
 * UDP6CheckSumRx= for the same settings (true sets the zero-checksum flags as well), so those
 * spellings are read too.
 */
const L2TP_KEYS: Record<string, { word: string; bool?: 'same' | 'inverted' }> = {
  TunnelId: { word: 'tunnel_id' },
  PeerTunnelId: { word: 'peer_tunnel_id' },
  Remote: { word: 'remote' },
  Local: { word: 'local' },
  EncapsulationType: { word: 'encap' },
  UDPSourcePort: { word: 'udp_sport' },
  UDPDestinationPort: { word: 'udp_dport' },
  UDPChecksum: { word: 'udp_csum', bool: 'same' },
  UDPCheckSum: { word: 'udp_csum', bool: 'same' },
  UDP6ZeroChecksumTx: { word: 'udp6_csum_tx', bool: 'inverted' },
  UDP6CheckSumTx: { word: 'udp6_csum_tx', bool: 'inverted' },
  UDP6ZeroChecksumRx: { word: 'udp6_csum_rx', bool: 'inverted' },
  UDP6CheckSumRx: { word: 'udp6_csum_rx', bool: 'inverted' },
};
const SESSION_KEYS: Record<string, string> = {
  Name: 'name',
  SessionId: 'session_id',
  PeerSessionId: 'peer_session_id',
  Layer2SpecificHeader: 'l2spec_type',
};

function readNetdev(file: string, text: string, out: Collector): void {
  const sections = unitSections(file, text, out);
  const netdev = sections.find((s) => s.name === 'NetDev');
  const kind = netdev?.entries.filter((e) => e.key === 'Kind').pop();
  if (kind?.value !== 'l2tp') {
    out.problem(file, kind?.line ?? netdev?.line ?? 1, `${kind ? `Kind=${kind.value}` : 'no Kind='}: only Kind=l2tp netdevs are imported`);
    return;
  }
  const tunnels = sections.filter((s) => s.name === 'L2TP');
  if (tunnels.length !== 1) {
    out.problem(file, tunnels[1]?.line ?? netdev!.line, `${tunnels.length ? 'more than one' : 'no'} [L2TP] section; a .netdev describes one tunnel`);
    return;
  }
  const l2tp = tunnels[0];
  // Later assignments win, as in systemd; an empty value resets the key.
  const values = new Map<string, { key: string; value: string; line: number }>();
  for (const e of l2tp.entries) {
    const map = L2TP_KEYS[e.key];
    if (!map) { out.problem(file, e.line, `${e.key}=: not an [L2TP] key l2tpd can map (${Object.keys(L2TP_KEYS).join(', ')})`); continue; }
    if (e.value === '') values.delete(map.word); else values.set(map.word, e);
  }
  const tokens: Token[] = [{ text: 'add', line: l2tp.line }, { text: 'tunnel', line: l2tp.line }];
  let refused = false;
  for (const [word, e] of values) {
    const origin = `${e.key}=${e.value}`;
    let value = e.value;
    const bool = L2TP_KEYS[e.key].bool;
    if (bool) {
      const b = unitBoolean(e.value);
      if (b === undefined) { out.problem(file, e.line, `${origin}: expected a boolean (yes or no)`); continue; }
      value = (bool === 'same' ? b : !b) ? 'on' : 'off';
    }
    if (word === 'local') {
      const [addr, ifname] = e.value.split('@');
      if (/^(auto|static|dynamic)$/.test(addr)) {
        out.problem(file, e.line, `${origin}: l2tpd binds each tunnel to one address; write Local=ADDRESS`);
        refused = true;
        continue;
      }
      if (ifname !== undefined) out.note(file, e.line, `${origin}: the interface part (@${ifname}) is not needed, the address is enough`);
      value = addr;
    }
    tokens.push({ text: word, line: e.line, origin }, { text: value, line: e.line, origin });
  }
  if (!values.has('local')) {
    out.problem(file, l2tp.line, '[L2TP] has no Local= (networkd picks one, "auto"); l2tpd binds each tunnel to one address: write Local=ADDRESS');
    return;
  }
  // networkd turns both IPv6 zero-checksum flags on unless told otherwise (l2tp_tunnel_init);
  // keep what goes on the wire the same, so the peer still accepts it.
  const remote = values.get('remote')?.value ?? '';
  if (remote.includes(':') && (values.get('encap')?.value ?? 'udp') === 'udp') {
    for (const [word, key] of [['udp6_csum_tx', 'UDP6ZeroChecksumTx'], ['udp6_csum_rx', 'UDP6ZeroChecksumRx']] as const) {
      if (values.has(word)) continue;
      tokens.push({ text: word, line: l2tp.line, origin: `no ${key}=` }, { text: 'off', line: l2tp.line, origin: `no ${key}=` });
      out.note(file, l2tp.line, `no ${key}=: networkd's default is zero UDP checksums over IPv6, so ${word} off (write ${key}=no for checksums)`);
    }
  }
  const tunnelKeys = Object.fromEntries(Object.entries(L2TP_KEYS).reverse().map(([key, m]) => [m.word, key]));
  out.objects.push({ kind: 'tunnel', file, line: l2tp.line, tokens, keys: tunnelKeys, refused });
  const tunnelId = values.get('tunnel_id');

  for (const s of sections.filter((x) => x.name === 'L2TPSession')) {
    const words = new Map<string, { key: string; value: string; line: number }>();
    for (const e of s.entries) {
      const word = SESSION_KEYS[e.key];
      if (!word) { out.problem(file, e.line, `${e.key}=: not an [L2TPSession] key l2tpd can map (${Object.keys(SESSION_KEYS).join(', ')})`); continue; }
      if (e.value === '') words.delete(word); else words.set(word, e);
    }
    const st: Token[] = [{ text: 'add', line: s.line }, { text: 'session', line: s.line }];
    if (tunnelId) st.push({ text: 'tunnel_id', line: tunnelId.line, origin: `TunnelId=${tunnelId.value}` }, { text: tunnelId.value, line: tunnelId.line, origin: `TunnelId=${tunnelId.value}` });
    for (const [word, e] of words) {
      const origin = `${e.key}=${e.value}`;
      st.push({ text: word, line: e.line, origin }, { text: e.value, line: e.line, origin });
    }
    // A session without TunnelId in its file: the tunnel's own error says so once.
    const keys = { tunnel_id: 'TunnelId', ...Object.fromEntries(Object.entries(SESSION_KEYS).map(([key, word]) => [word, key])) };
    if (tunnelId) out.objects.push({ kind: 'session', file, line: s.line, tokens: st, keys });
  }
  for (const s of sections) {
    if (!['NetDev', 'L2TP', 'L2TPSession'].includes(s.name)) out.problem(file, s.line, `[${s.name}]: only [NetDev], [L2TP] and [L2TPSession] are imported from a .netdev`);
  }
  for (const e of netdev!.entries) {
    if (e.key === 'Name' || e.key === 'Description') continue; // the tunnel netdev's own name: l2tpd tunnels have none
    if (e.key !== 'Kind') out.problem(file, e.line, `${e.key}=: l2tpd tunnels have no interface of their own; set the MTU per session (mtu, or MTUBytes= in the session's .network)`);
  }
}

/** A .network file for a session interface: [Match] Name=, [Network] Bridge=, [Link] MTUBytes=. */
function readNetwork(file: string, text: string, out: Collector): void {
  const sections = unitSections(file, text, out);
  let name: Token | undefined;
  const s: Omit<LinkSettings, 'name'> = { file, line: sections[0]?.line ?? 1, up: true };
  for (const sec of sections) {
    for (const e of sec.entries) {
      const where = `[${sec.name}] ${e.key}=`;
      if (sec.name === 'Match' && e.key === 'Name' && /^[^\s*?[\]!]+$/.test(e.value)) name = { text: e.value, line: e.line, origin: `Name=${e.value}` };
      else if (sec.name === 'Network' && e.key === 'Bridge') s.master = { text: e.value, line: e.line, origin: `Bridge=${e.value}` };
      else if (sec.name === 'Link' && e.key === 'MTUBytes') s.mtu = { text: e.value, line: e.line, origin: `MTUBytes=${e.value}` };
      else out.problem(file, e.line, `${where}: import maps only [Match] Name= (one interface), [Network] Bridge= and [Link] MTUBytes= of a session's .network`);
    }
  }
  if (!name) { out.problem(file, s.line, 'no [Match] Name= naming one session interface'); return; }
  out.linkSets.push({ ...s, name });
}

// ---------------------------------------------------------------------------------------------
// From commands to a plan.

/** The line of the word an error names (its value's line), else `fallback`. */
function tokenLine(tokens: Token[], word: string | undefined, fallback: number): number {
  if (word === undefined) return fallback;
  const i = tokens.findIndex((x) => x.text === word);
  return i < 0 ? fallback : tokens[Math.min(i + 1, tokens.length - 1)].line;
}

/** An error about `word` of `cmd`, with the networkd `Key=Value` (or missing `Key=`) it concerns. */
function describe(cmd: ObjectCommand, word: string | undefined, message: string): string {
  const i = word === undefined ? -1 : cmd.tokens.findIndex((x) => x.text === word);
  const origin = i < 0 ? undefined : cmd.tokens[i].origin;
  if (origin) return `${origin}: ${message}`;
  const key = word === undefined ? undefined : cmd.keys?.[word];
  return key && i < 0 ? `${key}= is missing: ${message}` : message;
}

/** Set `word value` in a command, replacing an earlier value (later settings win, as in a shell). */
function setWord(cmd: ObjectCommand, word: string, value: Token): void {
  const i = cmd.tokens.findIndex((x, k) => k >= 2 && x.text === word);
  const at = { text: word, line: value.line, origin: value.origin };
  if (i >= 0) cmd.tokens.splice(i, 2, at, value);
  else cmd.tokens.push(at, value);
}

function parseObject(cmd: ObjectCommand, out: Collector): TunnelConfig | SessionConfig | undefined {
  try {
    const parsed = parseCommand(cmd.tokens.map((x) => x.text));
    return parsed.params as TunnelConfig | SessionConfig;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.problem(cmd.file, tokenLine(cmd.tokens, err.word, cmd.line), describe(cmd, err.word, err.message));
    return undefined;
  }
}

/** The value a command gives `word`, if any. */
function wordValue(cmd: ObjectCommand, word: string): string | undefined {
  const i = cmd.tokens.findIndex((x, k) => k >= 2 && x.text === word);
  return i >= 0 ? cmd.tokens[i + 1]?.text : undefined;
}

/**
 * Apply the `ip link` settings to the sessions they name. Sessions without `name` get the
 * kernel's names (l2tpeth0, l2tpeth1, ... in the order they are created) when a line refers
 * to one, as they would on a host without other l2tpeth interfaces.
 */
function applyLinks(out: Collector): void {
  const sessions = out.objects.filter((o) => o.kind === 'session');
  const named = (n: string) => sessions.find((s) => wordValue(s, 'name') === n);
  const unnamed = sessions.filter((s) => { const n = wordValue(s, 'name'); return n === undefined || n.includes('%'); });
  const sessionOf = (t: Token): ObjectCommand | undefined => {
    const found = named(t.text);
    if (found) return found;
    const k = /^l2tpeth(\d+)$/.exec(t.text);
    const s = k ? unnamed[Number(k[1])] : undefined;
    if (s) {
      setWord(s, 'name', { ...t });
      out.note(s.file, s.line, `session named ${t.text} (line ${t.line} refers to it), as the kernel names it on a host without other l2tpeth interfaces`);
    }
    return s;
  };
  const deferred: LinkSettings[] = [];
  for (const ls of out.linkSets) {
    const s = sessionOf(ls.name);
    if (!s) { deferred.push(ls); continue; }
    if (ls.mtu) setWord(s, 'mtu', ls.mtu);
    if (ls.master) setWord(s, 'bridge', ls.master);
  }
  const bridged = (br: string) => sessions.filter((s) => wordValue(s, 'bridge') === br);
  const vlanOf = (ifname: string) => sessions.find((s) => `${wordValue(s, 'dev')}.${wordValue(s, 'vlan')}` === ifname);
  // TRUNK.ID master BR, BR holding one session: that session's vlan ID dev TRUNK.
  const rest: LinkSettings[] = [];
  for (const ls of deferred) {
    const vlanIf = /^(.+)\.(\d+)$/.exec(ls.name.text);
    if (!(ls.master && vlanIf && !ls.mtu)) { rest.push(ls); continue; }
    const inBridge = bridged(ls.master.text);
    if (inBridge.length !== 1) {
      out.problem(ls.file, ls.master.line, `${ls.name.text} master ${ls.master.text}: ${inBridge.length ? 'more than one session is' : 'no session of this import is'} in bridge ${ls.master.text}; l2tpd bridges a VLAN interface with one session (vlan ID dev TRUNK)`);
      continue;
    }
    setWord(inBridge[0], 'vlan', { text: vlanIf[2], line: ls.name.line, origin: ls.name.origin });
    setWord(inBridge[0], 'dev', { text: vlanIf[1], line: ls.name.line, origin: ls.name.origin });
  }
  for (const ls of rest) {
    // Bridges and VLAN interfaces l2tpd creates for its sessions come up by themselves.
    if (ls.up && !ls.mtu && !ls.master && (bridged(ls.name.text).length > 0 || vlanOf(ls.name.text))) continue;
    if (ls.name.origin) {
      out.problem(ls.file, ls.name.line, `${ls.name.origin}: no session of this import has this interface name`);
      continue;
    }
    const what = ls.master
      ? `${ls.name.text} master ${ls.master.text}: l2tpd puts only its session interfaces (and a VLAN interface, with vlan ID dev TRUNK) in bridges`
      : `${ls.name.text}: not a session interface of this import, nor a bridge or VLAN interface l2tpd creates for one`;
    out.problem(ls.file, ls.name.line, `${what}; keep this line in the host's network configuration`);
  }
  for (const la of out.linkAdds) {
    if (la.kind === 'bridge') {
      if (bridged(la.name.text).length === 0) out.problem(la.file, la.name.line, `bridge ${la.name.text}: no session of this import is in it; l2tpd creates only the bridges its sessions use`);
      continue;
    }
    const expected = `${la.trunk!.text}.${la.vlan!.text}`;
    if (la.name.text !== expected) out.problem(la.file, la.name.line, `${la.name.text}: l2tpd names the VLAN interface ${expected} (TRUNK.ID)`);
    else if (!vlanOf(expected)) out.problem(la.file, la.name.line, `${la.name.text}: no session of this import is bridged with it`);
  }
}

function fileKind(f: SourceFile): 'netdev' | 'network' | 'script' {
  if (f.name.endsWith('.netdev')) return 'netdev';
  if (f.name.endsWith('.network')) return 'network';
  return /^\s*\[NetDev\]\s*$/m.test(f.text) ? 'netdev' : 'script';
}

/**
 * The tunnels and sessions `files` describe. `existing` is the running configuration: the
 * import is validated on top of it (its sessions may use tunnels that already run), and only
 * the imported entries are returned.
 */
export function planImport(files: SourceFile[], existing: Config = emptyConfig()): ImportPlan {
  const out = new Collector();
  for (const f of files) {
    const kind = fileKind(f);
    if (kind === 'netdev') readNetdev(f.name, f.text, out);
    else if (kind === 'network') readNetwork(f.name, f.text, out);
    else readScript(f.name, f.text, out);
  }
  applyLinks(out);
  const config = emptyConfig();
  const origins: ImportPlan['origins'] = { tunnels: [], sessions: [] };
  const current: Config = { tunnels: [...existing.tunnels], sessions: [...existing.sessions] };
  const checked: Array<[ObjectCommand, TunnelConfig | SessionConfig]> = [];
  for (const cmd of out.objects) {
    if (cmd.refused) continue;
    const params = parseObject(cmd, out);
    if (params) checked.push([cmd, params]);
  }
  // Tunnels first, so that a session may come before its tunnel in the files. Conflicts are
  // looked for once everything reads: with a tunnel refused, its sessions' would be noise.
  checked.sort((x, y) => (x[0].kind === y[0].kind ? 0 : x[0].kind === 'tunnel' ? -1 : 1));
  for (const [cmd, params] of out.problems.length ? [] : checked) {
    try {
      if (cmd.kind === 'tunnel') checkAddTunnel(current, params as TunnelConfig);
      else checkAddSession(current, params as SessionConfig);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      out.problem(cmd.file, tokenLine(cmd.tokens, err.field, cmd.line), describe(cmd, err.field, err.message));
      continue;
    }
    const key = cmd.kind === 'tunnel' ? 'tunnels' : 'sessions';
    (current[key] as Array<TunnelConfig | SessionConfig>).push(params);
    (config[key] as Array<TunnelConfig | SessionConfig>).push(params);
    const what = cmd.kind === 'tunnel' ? `tunnel ${params.tunnel_id}` : `session ${(params as SessionConfig).session_id} in tunnel ${params.tunnel_id}`;
    origins[key].push({ file: cmd.file, line: cmd.line, message: what });
  }
  if (out.objects.length === 0 && out.problems.length === 0) {
    out.problem(files[0]?.name ?? '-', 1, 'nothing to import: no ip l2tp add, l2tpctl add or [L2TP] tunnel found');
  }
  const order = (f: Finding) => files.findIndex((x) => x.name === f.file);
  const byPlace = (a: Finding, b: Finding) => order(a) - order(b) || a.line - b.line;
  return { config, origins, notes: out.notes.sort(byPlace), problems: out.problems.sort(byPlace) };
}
