/**
 * Validation and normalisation of the configuration model, shared by the CLI (words arrive as
 * strings), the API (JSON bodies) and the config-file loader. Pure: no I/O.
 *
 * Every refusal is a ConfigError naming the field, the value and what is allowed; conflicts with
 * existing state are ConflictErrors (404/409). Decisions:
 * - Numbers may be JSON numbers or decimal strings ("3000"); nothing else (no hex, no sign).
 * - Enum words are case-insensitive on input and stored lowercase; on/off also accept booleans.
 * - Checksum options apply only where they mean something: `udp_csum` to encap udp over IPv4,
 *   `udp6_csum_tx`/`udp6_csum_rx` to encap udp over IPv6. Given anywhere else they are refused
 *   (a user setting `udp_csum off` on IPv6 would otherwise silently keep checksums on). Defaults
 *   are filled in only for the combination they apply to.
 * - `local` and `remote` must be specific unicast-style literals of one family: no wildcard
 *   (0.0.0.0, ::), no IPv6 zone index. IPv6 literals are stored in canonical (RFC 5952) form.
 */
import { isIP } from 'node:net';
import { ConfigError, ConflictError, showValue } from './errors.js';
import {
  SESSION_DEFAULTS,
  TUNNEL_DEFAULTS,
  type Config,
  type OnOff,
  type SessionConfig,
  type TunnelConfig,
} from './model.js';
import { MAX_SESSION_MTU } from '../dataplane/layout.js';
import { ENCAPSULATIONS, type EncapName } from '../dataplane/encap.js';
import { IFNAME_ALLOWED, IFNAME_CONTROL, IFNAME_MAX, ifnameProblem } from '../netlink/ifname.js';

export const ID_MAX = 0xffffffff;
export const ID_ALLOWED = `an integer 1..${ID_MAX}`;
export const PORT_ALLOWED = 'an integer 1..65535';
export const OFFSET_MAX = 256;
export const REORDER_TIMEOUT_MAX = 60000;
export const MTU_MIN = 68;
export const VLAN_MIN = 1;
export const VLAN_MAX = 4094;

/** Field order of a tunnel, used for unknown-field messages and stable serialisation. */
export const TUNNEL_FIELDS = [
  'tunnel_id', 'peer_tunnel_id', 'encap', 'local', 'remote',
  'udp_sport', 'udp_dport', 'udp_csum', 'udp6_csum_tx', 'udp6_csum_rx',
] as const;

/** Field order of a session. */
export const SESSION_FIELDS = [
  'tunnel_id', 'session_id', 'peer_session_id', 'name', 'cookie', 'peer_cookie',
  'l2spec_type', 'seq', 'offset', 'peer_offset', 'reorder_timeout', 'mtu', 'bridge', 'vlan', 'dev',
] as const;

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Single values. Each takes the field name used in messages and returns the normalised value.

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

export function parseId(field: string, value: unknown): number {
  return parseUint(field, value, 1, ID_MAX, ID_ALLOWED);
}

export function parsePort(field: string, value: unknown): number {
  return parseUint(field, value, 1, 65535, PORT_ALLOWED);
}

/** One of `values`, case-insensitive, returned lowercase. */
export function parseEnum<T extends string>(field: string, value: unknown, values: readonly T[]): T {
  if (typeof value === 'string') {
    const v = value.toLowerCase();
    if ((values as readonly string[]).includes(v)) return v as T;
  }
  throw new ConfigError(field, value, values.join(' or '));
}

export function parseOnOff(field: string, value: unknown): OnOff {
  if (value === true) return 'on';
  if (value === false) return 'off';
  return parseEnum(field, value, ['on', 'off'] as const);
}

/**
 * An IPv4 or IPv6 unicast literal; IPv6 comes back in canonical form. Returns [address, family].
 * Refused: the wildcard, multicast, the limited broadcast 255.255.255.255 (a tunnel has one
 * peer) and IPv4-mapped IPv6 (an IPv6 tunnel socket is IPv6-only: write the IPv4 address).
 * Subnet broadcasts depend on the host's prefixes and are refused when the tunnel starts.
 */
export function parseAddress(field: string, value: unknown): [string, 4 | 6] {
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
  return [addr, family as 4 | 6];
}

/** 8 or 16 hex digits, returned lowercase. */
export function parseCookie(field: string, value: unknown): string {
  if (typeof value === 'string' && /^(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{16})$/.test(value)) return value.toLowerCase();
  throw new ConfigError(field, value, '8 or 16 hex digits');
}

/**
 * A Linux interface name, checked as the kernel checks it (netlink/ifname.ts), control characters
 * refused too. With `pattern`, one `%d` is allowed (the kernel numbers it: `l2tpeth%d`); any
 * other '%' is refused.
 */
export function parseIfname(field: string, value: unknown, pattern = false): string {
  const allowed = pattern
    ? `an interface name of ${IFNAME_ALLOWED} (one %d allowed)`
    : `an interface name of ${IFNAME_ALLOWED}, without "%"`;
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

/**
 * Deepest nesting a JSON document may have. A config file is 3 levels deep and an API body 1;
 * deeper input is refused before anything walks it (printing it back in an error message would
 * otherwise overflow the stack).
 */
export const MAX_JSON_DEPTH = 16;

/** True when `value` nests arrays/objects more than `max` levels deep. Iterative: safe on any depth. */
export function nestedDeeperThan(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

function rejectUnknown(what: string, input: Obj, known: readonly string[]): void {
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) {
      throw new ConfigError(key, input[key], `one of: ${known.join(', ')}`,
        `unknown field "${key}" in ${what}; expected one of: ${known.join(', ')}`);
    }
  }
}

function required(field: string, input: Obj, allowed: string): unknown {
  const v = input[field];
  if (v === undefined) throw new ConfigError(field, undefined, allowed);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Tunnels and sessions.

/** Run `fn`; a ConfigError it throws gets its field name prefixed by `path`. */
function withPrefix<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) throw err.withPrefix(path);
    throw err;
  }
}

/** Validate one tunnel and fill in defaults. Field names in errors are prefixed by `path`. */
export function normalizeTunnel(input: unknown, path = ''): TunnelConfig {
  return withPrefix(path, () => normalizeTunnelInner(input));
}

function normalizeTunnelInner(input: unknown): TunnelConfig {
  if (!isObject(input)) throw new ConfigError('tunnel', input, 'an object with tunnel fields');
  rejectUnknown('tunnel', input, TUNNEL_FIELDS);
  const tunnel_id = parseId('tunnel_id', required('tunnel_id', input, ID_ALLOWED));
  const peer_tunnel_id = parseId('peer_tunnel_id', required('peer_tunnel_id', input, ID_ALLOWED));
  const encap: EncapName = input.encap === undefined
    ? TUNNEL_DEFAULTS.encap
    : parseEnum('encap', input.encap, Object.keys(ENCAPSULATIONS) as EncapName[]);
  const [local, family] = parseAddress('local', required('local', input, 'an IPv4 or IPv6 address'));
  const [remote, rfamily] = parseAddress('remote', required('remote', input, 'an IPv4 or IPv6 address'));
  if (rfamily !== family) {
    throw new ConfigError('remote', input.remote, `an IPv${family} address (same family as local ${local})`);
  }
  if (remote === local) {
    throw new ConfigError('remote', input.remote, `the peer's address, not local ${local}`,
      `remote ${String(input.remote)}: same as local; expected the peer's address`);
  }
  const t: TunnelConfig = { tunnel_id, peer_tunnel_id, encap, local, remote };
  if (encap === 'udp') {
    t.udp_sport = parsePort('udp_sport', required('udp_sport', input, `${PORT_ALLOWED} (required with encap udp)`));
    t.udp_dport = parsePort('udp_dport', required('udp_dport', input, `${PORT_ALLOWED} (required with encap udp)`));
  } else {
    for (const f of ['udp_sport', 'udp_dport', 'udp_csum', 'udp6_csum_tx', 'udp6_csum_rx'] as const) {
      if (input[f] !== undefined) {
        throw new ConfigError(f, input[f], 'nothing with encap ip',
          `${f} ${String(input[f])}: only applies to encap udp (this tunnel is encap ip)`);
      }
    }
    return t;
  }
  if (family === 4) {
    for (const f of ['udp6_csum_tx', 'udp6_csum_rx'] as const) {
      if (input[f] !== undefined) {
        throw new ConfigError(f, input[f], 'nothing over IPv4 (use udp_csum)',
          `${f} ${String(input[f])}: only applies to UDP over IPv6; use udp_csum for IPv4`);
      }
    }
    t.udp_csum = input.udp_csum === undefined ? TUNNEL_DEFAULTS.udp_csum : parseOnOff('udp_csum', input.udp_csum);
  } else {
    if (input.udp_csum !== undefined) {
      throw new ConfigError('udp_csum', input.udp_csum, 'nothing over IPv6 (use udp6_csum_tx/udp6_csum_rx)',
        `udp_csum ${String(input.udp_csum)}: only applies to UDP over IPv4; use udp6_csum_tx and udp6_csum_rx for IPv6`);
    }
    t.udp6_csum_tx = input.udp6_csum_tx === undefined
      ? TUNNEL_DEFAULTS.udp6_csum_tx : parseOnOff('udp6_csum_tx', input.udp6_csum_tx);
    t.udp6_csum_rx = input.udp6_csum_rx === undefined
      ? TUNNEL_DEFAULTS.udp6_csum_rx : parseOnOff('udp6_csum_rx', input.udp6_csum_rx);
  }
  return t;
}

/** Validate one session and fill in defaults. Field names in errors are prefixed by `path`. */
export function normalizeSession(input: unknown, path = ''): SessionConfig {
  return withPrefix(path, () => normalizeSessionInner(input));
}

function normalizeSessionInner(input: unknown): SessionConfig {
  if (!isObject(input)) throw new ConfigError('session', input, 'an object with session fields');
  rejectUnknown('session', input, SESSION_FIELDS);
  const s: SessionConfig = {
    tunnel_id: parseId('tunnel_id', required('tunnel_id', input, ID_ALLOWED)),
    session_id: parseId('session_id', required('session_id', input, ID_ALLOWED)),
    peer_session_id: parseId('peer_session_id', required('peer_session_id', input, ID_ALLOWED)),
  };
  if (input.name !== undefined) s.name = parseIfname('name', input.name, true);
  if (input.cookie !== undefined) s.cookie = parseCookie('cookie', input.cookie);
  if (input.peer_cookie !== undefined) s.peer_cookie = parseCookie('peer_cookie', input.peer_cookie);
  s.l2spec_type = input.l2spec_type === undefined
    ? SESSION_DEFAULTS.l2spec_type : parseEnum('l2spec_type', input.l2spec_type, ['none', 'default'] as const);
  s.seq = input.seq === undefined
    ? SESSION_DEFAULTS.seq : parseEnum('seq', input.seq, ['none', 'send', 'recv', 'both'] as const);
  // Sequence numbers live in the default sublayer: without it `send` has no effect on the wire
  // and `recv`/`both` would drop every frame (Linux accepts both and behaves exactly so).
  if (s.seq !== 'none' && s.l2spec_type === 'none') {
    throw new ConfigError('seq', s.seq, 'none when l2spec_type is none (sequence numbers need l2spec_type default)');
  }
  s.offset = input.offset === undefined
    ? SESSION_DEFAULTS.offset : parseUint('offset', input.offset, 0, OFFSET_MAX);
  s.peer_offset = input.peer_offset === undefined
    ? SESSION_DEFAULTS.peer_offset : parseUint('peer_offset', input.peer_offset, 0, OFFSET_MAX);
  s.reorder_timeout = input.reorder_timeout === undefined
    ? SESSION_DEFAULTS.reorder_timeout
    : parseUint('reorder_timeout', input.reorder_timeout, 0, REORDER_TIMEOUT_MAX, `an integer 0..${REORDER_TIMEOUT_MAX} (milliseconds)`);
  if (input.mtu !== undefined) s.mtu = parseUint('mtu', input.mtu, MTU_MIN, MAX_SESSION_MTU);
  if (input.bridge !== undefined) s.bridge = parseIfname('bridge', input.bridge);
  if (input.vlan !== undefined || input.dev !== undefined) {
    if (input.vlan === undefined) {
      throw new ConfigError('vlan', undefined, `an integer ${VLAN_MIN}..${VLAN_MAX} (dev needs vlan)`,
        `vlan: missing; dev ${String(input.dev)} needs vlan ID (${VLAN_MIN}..${VLAN_MAX})`);
    }
    const vlan = parseUint('vlan', input.vlan, VLAN_MIN, VLAN_MAX);
    if (input.dev === undefined) {
      throw new ConfigError('dev', undefined, 'the trunk interface name (vlan needs dev)',
        `dev: missing; vlan ${vlan} needs dev TRUNK (the interface carrying the VLAN)`);
    }
    const dev = parseIfname('dev', input.dev);
    const sub = vlanIfname({ dev, vlan })!;
    if (Buffer.byteLength(sub) > IFNAME_MAX) {
      throw new ConfigError('dev', input.dev, `a trunk name short enough for "${sub}" to fit ${IFNAME_MAX} bytes`,
        `dev ${dev}: the VLAN interface name "${sub}" would exceed ${IFNAME_MAX} bytes`);
    }
    s.vlan = vlan;
    s.dev = dev;
  }
  if (s.name !== undefined) {
    for (const [f, other] of [['bridge', s.bridge], ['dev', s.dev]] as const) {
      if (other === s.name) {
        throw new ConfigError('name', s.name, `a name different from ${f}`, `name ${s.name}: same as ${f}; the session interface needs its own name`);
      }
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Conflicts with the current configuration.

export function emptyConfig(): Config {
  return { tunnels: [], sessions: [] };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The bridge a session ends up in: `bridge`, or `brvlanID` with `vlan`. */
export function sessionBridge(s: SessionConfig): string | undefined {
  if (s.bridge !== undefined) return s.bridge;
  if (s.vlan !== undefined) return `brvlan${s.vlan}`;
  return undefined;
}

/** The VLAN interface `TRUNK.ID` of a session with `vlan ID dev TRUNK`. */
export function vlanIfname(s: Pick<SessionConfig, 'dev' | 'vlan'>): string | undefined {
  return s.vlan !== undefined && s.dev !== undefined ? `${s.dev}.${s.vlan}` : undefined;
}

/** Interfaces a session refers to but does not own (bridge, trunk, VLAN sub-interface). */
function usedNames(s: SessionConfig): string[] {
  const out: string[] = [];
  const br = sessionBridge(s);
  if (br !== undefined) out.push(br);
  if (s.dev !== undefined) out.push(s.dev);
  const vlanIf = vlanIfname(s);
  if (vlanIf !== undefined) out.push(vlanIf);
  return out;
}

/** The session's own interface name, when fixed by the config (not a `%d` pattern). */
export function ownName(s: SessionConfig): string | undefined {
  return s.name !== undefined && !s.name.includes('%') ? s.name : undefined;
}

export function checkAddTunnel(cfg: Config, t: TunnelConfig): void {
  if (cfg.tunnels.some((x) => x.tunnel_id === t.tunnel_id)) {
    throw new ConflictError(`tunnel ${t.tunnel_id} already exists`, 409, 'tunnel_id', t.tunnel_id);
  }
  if (ENCAPSULATIONS[t.encap].socketPerTunnel) {
    // Each tunnel binds its own socket to local:udp_sport.
    const other = cfg.tunnels.find((x) => x.encap === t.encap && x.local === t.local && x.udp_sport === t.udp_sport);
    if (other) {
      throw new ConflictError(
        `local ${t.local} udp_sport ${t.udp_sport} is already used by tunnel ${other.tunnel_id}`,
        409, 'udp_sport', t.udp_sport);
    }
  }
}

export function checkAddSession(cfg: Config, s: SessionConfig): void {
  const tunnel = cfg.tunnels.find((x) => x.tunnel_id === s.tunnel_id);
  if (!tunnel) throw new ConflictError(`tunnel ${s.tunnel_id} does not exist`, 404, 'tunnel_id', s.tunnel_id);
  if (cfg.sessions.some((x) => x.tunnel_id === s.tunnel_id && x.session_id === s.session_id)) {
    throw new ConflictError(`session ${s.session_id} already exists in tunnel ${s.tunnel_id}`, 409, 'session_id', s.session_id);
  }
  if (ENCAPSULATIONS[tunnel.encap].sessionIdsPerHost) {
    const sameEncap = new Set(cfg.tunnels.filter((x) => x.encap === tunnel.encap).map((x) => x.tunnel_id));
    const other = cfg.sessions.find((x) => x.session_id === s.session_id && sameEncap.has(x.tunnel_id));
    if (other) {
      throw new ConflictError(
        `session_id ${s.session_id} is already used in tunnel ${other.tunnel_id}; with encap ${tunnel.encap}, session IDs must be unique on the host`,
        409, 'session_id', s.session_id);
    }
  }
  const mine = ownName(s);
  const uses = usedNames(s);
  for (const x of cfg.sessions) {
    const theirs = ownName(x);
    if (mine !== undefined && mine === theirs) {
      throw new ConflictError(`interface name ${mine} is already used by session ${x.session_id} in tunnel ${x.tunnel_id}`, 409, 'name', mine);
    }
    if (mine !== undefined && usedNames(x).includes(mine)) {
      throw new ConflictError(`interface name ${mine} is already used as a bridge or trunk by session ${x.session_id} in tunnel ${x.tunnel_id}`, 409, 'name', mine);
    }
    if (theirs !== undefined && uses.includes(theirs)) {
      throw new ConflictError(`${theirs} is the interface of session ${x.session_id} in tunnel ${x.tunnel_id}; it cannot be a bridge or trunk`, 409,
        s.bridge === theirs ? 'bridge' : 'dev', theirs);
    }
  }
}

export function checkDelTunnel(cfg: Config, tunnelId: number): void {
  if (!cfg.tunnels.some((x) => x.tunnel_id === tunnelId)) {
    throw new ConflictError(`tunnel ${tunnelId} does not exist`, 404, 'tunnel_id', tunnelId);
  }
  const n = cfg.sessions.filter((x) => x.tunnel_id === tunnelId).length;
  if (n > 0) {
    throw new ConflictError(`tunnel ${tunnelId} still has ${plural(n, 'session')}; delete them first`, 409, 'tunnel_id', tunnelId);
  }
}

export function checkDelSession(cfg: Config, tunnelId: number, sessionId: number): void {
  if (!cfg.tunnels.some((x) => x.tunnel_id === tunnelId)) {
    throw new ConflictError(`tunnel ${tunnelId} does not exist`, 404, 'tunnel_id', tunnelId);
  }
  if (!cfg.sessions.some((x) => x.tunnel_id === tunnelId && x.session_id === sessionId)) {
    throw new ConflictError(`session ${sessionId} does not exist in tunnel ${tunnelId}`, 404, 'session_id', sessionId);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole file.

function asConfigError(err: unknown, path: string): unknown {
  if (err instanceof ConflictError) {
    const field = `${path}.${err.field ?? ''}`;
    return new ConfigError(field, err.value, 'a value that does not conflict',
      `${field}${err.value === undefined ? '' : ` ${String(err.value)}`}: ${err.message}`);
  }
  return err;
}

/**
 * Validate a whole configuration `{tunnels: [...], sessions: [...]}` (both optional): every
 * entry normalised, then the cross-checks of checkAddTunnel/checkAddSession applied in order.
 * Errors name the path: `sessions[2].session_id 7: ...`.
 */
export function validateConfig(input: unknown): Config {
  if (!isObject(input)) throw new ConfigError('config', input, 'an object {"tunnels": [...], "sessions": [...]}');
  rejectUnknown('config', input, ['tunnels', 'sessions']);
  const cfg = emptyConfig();
  for (const key of ['tunnels', 'sessions'] as const) {
    if (input[key] !== undefined && !Array.isArray(input[key])) {
      throw new ConfigError(key, input[key], `an array of ${key.slice(0, -1)} objects`);
    }
  }
  addEntries(cfg, 'tunnels', input.tunnels, normalizeTunnel, checkAddTunnel, cfg.tunnels);
  addEntries(cfg, 'sessions', input.sessions, normalizeSession, checkAddSession, cfg.sessions);
  return cfg;
}

/** Normalise each entry of `key` (path `key[i].`), cross-check it against `cfg` and append it to `list`. */
function addEntries<T>(
  cfg: Config, key: 'tunnels' | 'sessions', raw: unknown,
  normalize: (input: unknown, path: string) => T, check: (cfg: Config, entry: T) => void, list: T[],
): void {
  ((raw ?? []) as unknown[]).forEach((entry, i) => {
    const path = `${key}[${i}]`;
    const x = normalize(entry, `${path}.`);
    try {
      check(cfg, x);
    } catch (err) {
      throw asConfigError(err, path);
    }
    list.push(x);
  });
}

/** Same config with tunnels sorted by tunnel_id and sessions by (tunnel_id, session_id). */
export function sortConfig(cfg: Config): Config {
  return {
    tunnels: [...cfg.tunnels].sort((a, b) => a.tunnel_id - b.tunnel_id),
    sessions: [...cfg.sessions].sort((a, b) => a.tunnel_id - b.tunnel_id || a.session_id - b.session_id),
  };
}

/** Rebuild an object with keys in the given order (absent keys skipped). */
export function orderKeys<T extends object>(obj: T, order: readonly string[]): T {
  const src = obj as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of order) if (src[k] !== undefined) out[k] = src[k];
  for (const k of Object.keys(src)) if (!(k in out) && src[k] !== undefined) out[k] = src[k];
  return out as T;
}
