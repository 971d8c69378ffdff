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
import { TUNNEL } from './tunnel-words.js';
import { SESSION } from './session-words.js';
import { normalize, rejectUnknown } from './vocabulary.js';
import { ConfigIndex } from './conflicts.js';

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

// Conflict checks against a plain Config (each builds the indexes: O(n); the daemon keeps a
// ConfigIndex and checks against that instead).

export function checkAddTunnel(cfg: Config, t: TunnelConfig): void {
  ConfigIndex.of(cfg).checkAddTunnel(t);
}

export function checkAddSession(cfg: Config, s: SessionConfig): void {
  ConfigIndex.of(cfg).checkAddSession(s);
}

export function checkDelTunnel(cfg: Config, tunnelId: number): void {
  ConfigIndex.of(cfg).checkDelTunnel(tunnelId);
}

export function checkDelSession(cfg: Config, tunnelId: number, sessionId: number): void {
  ConfigIndex.of(cfg).checkDelSession(tunnelId, sessionId);
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
 * entry normalised, then cross-checked against the entries before it (ConfigIndex: O(1) each).
 * Errors name the path: `sessions[2].session_id 7: ...`.
 */
export function validateConfig(input: unknown): Config {
  const cfg = emptyConfig();
  validateToIndex(input, cfg);
  return cfg;
}

/**
 * validateConfig, returning the indexes it built (index.toConfig() lists them sorted);
 * `inOrder` receives the entries in the order of the input.
 */
export function validateToIndex(input: unknown, inOrder?: Config): ConfigIndex {
  const steps = validationSteps(input, inOrder);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** Entries validationSteps checks between two pauses. */
export const VALIDATION_STEP = 200;

/**
 * validateToIndex as a generator that pauses after every VALIDATION_STEP entries, so that a
 * caller on the daemon's event loop can let other work run between the steps (ten thousand
 * entries take over 100 ms). Returns the index; throws as validateToIndex does.
 */
export function* validationSteps(input: unknown, inOrder?: Config): Generator<void, ConfigIndex, void> {
  if (!isObject(input)) throw new ConfigError('config', input, 'an object {"tunnels": [...], "sessions": [...]}');
  rejectUnknown('config', input, ['tunnels', 'sessions']);
  for (const key of ['tunnels', 'sessions'] as const) {
    if (input[key] !== undefined && !Array.isArray(input[key])) {
      throw new ConfigError(key, input[key], `an array of ${key.slice(0, -1)} objects`);
    }
  }
  const index = new ConfigIndex();
  yield* addEntries('tunnels', input.tunnels, normalizeTunnel, (t) => index.checkAddTunnel(t), (t) => { index.addTunnel(t); inOrder?.tunnels.push(t); });
  yield* addEntries('sessions', input.sessions, normalizeSession, (x) => index.checkAddSession(x), (x) => { index.addSession(x); inOrder?.sessions.push(x); });
  return index;
}

/** Normalise each entry of `key` (path `key[i].`), check it against what came before and add it. */
function* addEntries<T>(
  key: 'tunnels' | 'sessions', raw: unknown,
  normalize: (input: unknown, path: string) => T, check: (entry: T) => void, add: (entry: T) => void,
): Generator<void, void, void> {
  const entries = (raw ?? []) as unknown[];
  for (let i = 0; i < entries.length; i++) {
    const path = `${key}[${i}]`;
    const x = normalize(entries[i], `${path}.`);
    try {
      check(x);
    } catch (err) {
      throw asConfigError(err, path);
    }
    add(x);
    if ((i + 1) % VALIDATION_STEP === 0) yield;
  }
}

/** Same config with tunnels sorted by tunnel_id and sessions by (tunnel_id, session_id). */
export function sortConfig(cfg: Config): Config {
  return {
    tunnels: [...cfg.tunnels].sort((a, b) => a.tunnel_id - b.tunnel_id),
    sessions: [...cfg.sessions].sort((a, b) => a.tunnel_id - b.tunnel_id || a.session_id - b.session_id),
  };
}
