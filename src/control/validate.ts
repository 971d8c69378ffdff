/**
 * Validation of the configuration model, shared by the CLI, the API (JSON bodies) and the
 * config-file loader. Pure: no I/O. Single words are validated (and their defaults applied) by
 * the word tables (vocabulary.ts); this file adds the checks against what already exists and
 * the whole-file rules.
 *
 * Every refusal is a ConfigError naming the field, the value and what is allowed; conflicts with
 * existing state are ConflictErrors (404/409).
 */
import { ConfigError, ConflictError } from './errors.js';
import type { Config, SessionConfig, TunnelConfig } from './model.js';
import { TUNNEL, socketWordConflict } from './tunnel-words.js';
import { SESSION, interfaceNames } from './session-words.js';
import { familyOf, normalize, rejectUnknown } from './vocabulary.js';
import { ENCAPSULATIONS } from '../dataplane/encap.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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
  return withPrefix(path, () => normalize(TUNNEL, input));
}

/** Validate one session and fill in defaults. Field names in errors are prefixed by `path`. */
export function normalizeSession(input: unknown, path = ''): SessionConfig {
  return withPrefix(path, () => normalize(SESSION, input));
}

// ---------------------------------------------------------------------------------------------
// Conflicts with the current configuration.

export function emptyConfig(): Config {
  return { tunnels: [], sessions: [] };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Interfaces a session refers to but does not own (bridge, trunk, VLAN sub-interface). */
function usedNames(s: SessionConfig): string[] {
  const n = interfaceNames(s);
  return [n.bridge, n.trunk, n.vlanIf].filter((x): x is string => x !== undefined);
}

export function checkAddTunnel(cfg: Config, t: TunnelConfig): void {
  if (cfg.tunnels.some((x) => x.tunnel_id === t.tunnel_id)) {
    throw new ConflictError(`tunnel ${t.tunnel_id} already exists`, 409, 'tunnel_id', t.tunnel_id);
  }
  const encap = ENCAPSULATIONS[t.encap];
  const key = encap.sharedSocketKey(familyOf(t.local), t.local);
  if (key !== undefined) {
    // Tunnels on one local address share a socket, and with it the socket's options.
    for (const x of cfg.tunnels) {
      if (encap.name !== x.encap || key !== encap.sharedSocketKey(familyOf(x.local), x.local)) continue;
      const word = socketWordConflict(t, x);
      if (word === undefined) continue;
      const mine = (t as Record<string, unknown>)[word];
      const theirs = (x as Record<string, unknown>)[word];
      throw new ConflictError(
        `${word} ${String(mine ?? 'unset')}: tunnel ${x.tunnel_id} shares the encap ${t.encap} socket on ${t.local} `
          + `and has ${word} ${String(theirs ?? 'unset')}; tunnels on one local address must agree on it`,
        409, word, mine);
    }
  }
  if (encap.socketPerTunnel) {
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
  const mine = interfaceNames(s).own;
  const uses = usedNames(s);
  for (const x of cfg.sessions) {
    const theirs = interfaceNames(x).own;
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
