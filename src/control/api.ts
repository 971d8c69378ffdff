/**
 * Control API: HTTP/1.1 + JSON over a UNIX stream socket, `node:http` only (README "Control
 * API", docs/dependencies.md "Control API transport"). The daemon implements `Engine`; this file
 * validates requests, runs each mutation through the engine's one queue (Engine.exclusive, which
 * the daemon's SIGHUP reloads and repairs use too), answers reads (GET) at once, never behind a
 * mutation (a reload of ten thousand sessions takes seconds), and maps errors to status codes:
 *   200/201 done · 400 ConfigError or bad JSON ({error, field, value, allowed}) ·
 *   404/409 ConflictError ({error, field?, value?}) · 404 unknown route · 405 wrong method ·
 *   413 body over 1 MiB · 500 anything else ({error}).
 *
 * Routes:
 *   GET    /v1/tunnels                          → {tunnels: TunnelView[]}
 *   GET    /v1/tunnels/:tid                     → TunnelView
 *   POST   /v1/tunnels            (TunnelConfig) → 201 TunnelView
 *   DELETE /v1/tunnels/:tid                     → {deleted: {tunnel_id}}
 *   GET    /v1/tunnels/:tid/sessions[?stats=1]  → {sessions: SessionView[]}
 *   GET    /v1/tunnels/:tid/sessions/:sid[?stats=1] → SessionView
 *   DELETE /v1/tunnels/:tid/sessions/:sid       → {deleted: {tunnel_id, session_id}}
 *   GET    /v1/sessions?tunnel_id=&session_id=&stats=1 → {sessions: SessionView[]}
 *   POST   /v1/sessions           (SessionConfig) → 201 SessionView
 *   POST   /v1/reload                           → engine.reload() result (or {})
 *   GET    /v1/status                           → engine.status()
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { ConfigError, ConflictError } from './errors.js';
import type { SessionConfig, TunnelConfig } from './model.js';
import { MAX_JSON_DEPTH, nestedDeeperThan, normalizeSession, normalizeTunnel } from './validate.js';
import { parseId } from './vocabulary.js';

/** A tunnel as the daemon reports it: its config plus run-time state (filled by the daemon). */
export type TunnelView = TunnelConfig & {
  /** Number of sessions in the tunnel. */
  sessions?: number;
  /** Run-time state, e.g. "up" or "error". */
  state?: string;
  /** Why the tunnel is not up, when it is not. */
  error?: string;
  /** When it went down (ISO 8601), when it is down. */
  since?: string;
  /** Tunnel counters (TUNNEL_COUNTER_NAMES). */
  stats?: Record<string, number>;
  [extra: string]: unknown;
};

/** A session as the daemon reports it: its config plus the interface actually used. */
export type SessionView = SessionConfig & {
  /** Actual interface name (`name`, or the kernel-style `l2tpethN` picked). */
  interface: string;
  /** Effective MTU of the session interface. */
  mtu: number;
  /** Bridge the interface is enslaved to (`bridge`, or `brvlanID` with `vlan`). */
  bridge?: string;
  /** Ports of that bridge (or the bridge) with an MTU above `mtu`: their larger frames are dropped. */
  ports_over_mtu?: { interface: string; mtu: number }[];
  /** The owning tunnel's peer_tunnel_id, for `show session` ("Peer session X, tunnel Y"). */
  peer_tunnel_id?: number;
  state?: string;
  /** Why the session is not up, and since when (ISO 8601). */
  error?: string;
  since?: string;
  /**
   * Whether frames go out numbered right now (running sessions with l2spec_type default): `seq`
   * says how a session starts, the peer's S bit may switch it since (docs/sequencing.md "Sending").
   */
  tx_seq?: 'on' | 'off';
  /** Session counters by SESSION_COUNTER_NAMES, present when asked for. */
  stats?: Record<string, number>;
  [extra: string]: unknown;
};

export interface SessionFilter {
  tunnel_id?: number;
  session_id?: number;
}

/** What `GET /v1/status` returns; the daemon fills it. */
export type StatusView = Record<string, unknown>;
/** What `POST /v1/reload` returns (e.g. counts of added/removed/changed entries). */
export type ReloadResult = Record<string, unknown>;

/** Runs tasks one at a time, in order: each starts once the one before it has settled. */
export function serialQueue(): <T>(task: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>): Promise<T> => {
    const run = last.then(task, task);
    last = run.catch(() => undefined);
    return run;
  };
}

/**
 * Implemented by the daemon. Each mutation checks conflicts against the ConfigIndex it keeps of
 * its own state (src/control/conflicts.ts: checkAddTunnel, checkAddSession, checkDelTunnel,
 * checkDelSession) and throws ConflictError/ConfigError to refuse. Reads must be safe to call at any time, also while
 * a mutation is under way.
 */
export interface Engine {
  /**
   * The engine's one queue (a serialQueue): the API runs every mutation through it, the daemon its
   * SIGHUP reloads and link repairs, so no two mutations run at once and check-then-apply is
   * atomic. The mutating methods expect to be called inside it; reads are not queued.
   */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
  listTunnels(): Promise<TunnelView[]>;
  addTunnel(t: TunnelConfig): Promise<TunnelView | void>;
  delTunnel(tunnelId: number): Promise<void>;
  listSessions(filter: SessionFilter, withStats: boolean): Promise<SessionView[]>;
  addSession(s: SessionConfig): Promise<SessionView | void>;
  delSession(tunnelId: number, sessionId: number): Promise<void>;
  reload(): Promise<ReloadResult | void>;
  status(): Promise<StatusView>;
}

/** The subset of a pino logger used here. */
export interface ApiLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const MAX_BODY_BYTES = 1024 * 1024;
export const SOCKET_MODE = 0o660;
export const SOCKET_DIR_MODE = 0o750;
/** sizeof(sockaddr_un.sun_path) - 1: longer paths cannot be bound or connected to. */
export const MAX_SOCKET_PATH = 107;
/** Control socket of l2tpd when neither --socket nor L2TPD_SOCKET says otherwise. */
export const DEFAULT_SOCKET = '/run/l2tpd/l2tpd.sock';

/** True when `socketPath` is longer than MAX_SOCKET_PATH bytes (cannot be bound or connected to). */
export function socketPathTooLong(socketPath: string): boolean {
  return Buffer.byteLength(socketPath) > MAX_SOCKET_PATH;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

interface Reply {
  status: number;
  body: unknown;
}

type Handler = (ctx: { params: string[]; query: URLSearchParams; body: () => Promise<unknown> }) => Promise<Reply>;

interface Route {
  pattern: RegExp;
  methods: Partial<Record<string, Handler>>;
}

function parseStats(query: URLSearchParams): boolean {
  const v = query.get('stats');
  if (v === null) return false;
  if (v === '' || v === '1' || v === 'true' || v === 'yes') return true;
  if (v === '0' || v === 'false' || v === 'no') return false;
  throw new ConfigError('stats', v, '1 or 0');
}

function checkQuery(query: URLSearchParams, allowed: string[]): void {
  for (const key of query.keys()) {
    if (!allowed.includes(key)) {
      throw new ConfigError(key, query.get(key), allowed.length ? `one of: ${allowed.join(', ')}` : 'no query parameters',
        `unknown query parameter "${key}"; expected ${allowed.length ? `one of: ${allowed.join(', ')}` : 'none'}`);
    }
  }
}

function buildRoutes(engine: Engine): Route[] {
  const tid = '([^/]+)';
  return [
    {
      pattern: /^\/v1\/tunnels$/,
      methods: {
        GET: async ({ query }) => {
          checkQuery(query, []);
          return { status: 200, body: { tunnels: await engine.listTunnels() } };
        },
        POST: async ({ query, body }) => {
          checkQuery(query, []);
          const t = normalizeTunnel(await body());
          const view = await engine.addTunnel(t);
          return { status: 201, body: view ?? t };
        },
      },
    },
    {
      pattern: new RegExp(`^/v1/tunnels/${tid}$`),
      methods: {
        GET: async ({ params, query }) => {
          checkQuery(query, []);
          const id = parseId('tunnel_id', params[0]);
          const t = (await engine.listTunnels()).find((x) => x.tunnel_id === id);
          if (!t) throw new ConflictError(`tunnel ${id} does not exist`, 404, 'tunnel_id', id);
          return { status: 200, body: t };
        },
        DELETE: async ({ params, query }) => {
          checkQuery(query, []);
          const id = parseId('tunnel_id', params[0]);
          await engine.delTunnel(id);
          return { status: 200, body: { deleted: { tunnel_id: id } } };
        },
      },
    },
    {
      pattern: new RegExp(`^/v1/tunnels/${tid}/sessions$`),
      methods: {
        GET: async ({ params, query }) => {
          checkQuery(query, ['stats']);
          const id = parseId('tunnel_id', params[0]);
          return { status: 200, body: { sessions: await engine.listSessions({ tunnel_id: id }, parseStats(query)) } };
        },
      },
    },
    {
      pattern: new RegExp(`^/v1/tunnels/${tid}/sessions/${tid}$`),
      methods: {
        GET: async ({ params, query }) => {
          checkQuery(query, ['stats']);
          const t = parseId('tunnel_id', params[0]);
          const s = parseId('session_id', params[1]);
          const list = await engine.listSessions({ tunnel_id: t, session_id: s }, parseStats(query));
          const found = list.find((x) => x.tunnel_id === t && x.session_id === s);
          if (!found) throw new ConflictError(`session ${s} does not exist in tunnel ${t}`, 404, 'session_id', s);
          return { status: 200, body: found };
        },
        DELETE: async ({ params, query }) => {
          checkQuery(query, []);
          const t = parseId('tunnel_id', params[0]);
          const s = parseId('session_id', params[1]);
          await engine.delSession(t, s);
          return { status: 200, body: { deleted: { tunnel_id: t, session_id: s } } };
        },
      },
    },
    {
      pattern: /^\/v1\/sessions$/,
      methods: {
        GET: async ({ query }) => {
          checkQuery(query, ['tunnel_id', 'session_id', 'stats']);
          const filter: SessionFilter = {};
          const t = query.get('tunnel_id');
          const s = query.get('session_id');
          if (t !== null && t !== '') filter.tunnel_id = parseId('tunnel_id', t);
          if (s !== null && s !== '') filter.session_id = parseId('session_id', s);
          return { status: 200, body: { sessions: await engine.listSessions(filter, parseStats(query)) } };
        },
        POST: async ({ query, body }) => {
          checkQuery(query, []);
          const s = normalizeSession(await body());
          const view = await engine.addSession(s);
          return { status: 201, body: view ?? s };
        },
      },
    },
    {
      pattern: /^\/v1\/reload$/,
      methods: {
        POST: async ({ query }) => {
          checkQuery(query, []);
          return { status: 200, body: (await engine.reload()) ?? {} };
        },
      },
    },
    {
      pattern: /^\/v1\/status$/,
      methods: {
        GET: async ({ query }) => {
          checkQuery(query, []);
          return { status: 200, body: await engine.status() };
        },
      },
    },
  ];
}

function readRaw(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new HttpError(413, `request body exceeds ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new HttpError(413, `request body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (err) => { if (!failed) { failed = true; reject(err); } });
    req.on('end', () => { if (!failed) resolve(Buffer.concat(chunks).toString('utf8')); });
  });
}

function parseBody(text: string): unknown {
  if (text.trim() === '') {
    throw new ConfigError('body', undefined, 'a JSON object', 'request body: missing; expected a JSON object');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('body', undefined, 'a JSON object', `request body: invalid JSON: ${(err as Error).message}`);
  }
  if (nestedDeeperThan(value)) {
    throw new ConfigError('body', undefined, `a JSON object nested at most ${MAX_JSON_DEPTH} levels deep`,
      `request body: nested deeper than ${MAX_JSON_DEPTH} levels; expected a JSON object of tunnel or session fields`);
  }
  return value;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/**
 * The request handler, separate from listening so it can be mounted anywhere. Requests wait for
 * `ready` (the daemon listens before it applies its config, so that a socket it cannot bind
 * stops it before it touches any interface, and answers once the config is applied).
 */
export function createApiHandler(engine: Engine, logger?: ApiLogger, ready: Promise<unknown> = Promise.resolve()): http.RequestListener {
  const routes = buildRoutes(engine);

  return (req, res) => {
    const started = Date.now();
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://l2tpd');
    } catch {
      send(res, 400, { error: 'invalid request URL' });
      return;
    }
    const pathname = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const done = (status: number, payload: unknown, headers?: Record<string, string>): void => {
      send(res, status, payload, headers);
      const entry = { method, url: req.url, status, ms: Date.now() - started };
      if (status >= 500) logger?.error(entry, 'control request failed');
      else if (method !== 'GET' && logger) logger.info(entry, 'control request');
      else logger?.debug(entry, 'control request');
    };

    const route = routes.find((r) => r.pattern.test(pathname));
    if (!route) {
      done(404, { error: `no such resource: ${method} ${pathname}` });
      return;
    }
    const handler = route.methods[method];
    if (!handler) {
      const allow = Object.keys(route.methods).join(', ');
      done(405, { error: `method ${method} not allowed on ${pathname}; allowed: ${allow}` }, { allow });
      return;
    }
    let params: string[];
    try {
      params = (route.pattern.exec(pathname) ?? []).slice(1).map((p) => decodeURIComponent(p));
    } catch {
      done(400, { error: `invalid percent-encoding in ${pathname}` });
      return;
    }
    // Read the whole body first, so a slow client never holds up the engine's queue.
    const raw = readRaw(req, MAX_BODY_BYTES);
    const body = async (): Promise<unknown> => parseBody(await raw);
    const request = { params, query: url.searchParams, body };
    raw
      .then(() => ready)
      .then(() => (method === 'GET' ? handler(request) : engine.exclusive(() => handler(request))))
      .then((reply) => done(reply.status, reply.body))
      .catch((err: unknown) => {
        if (err instanceof ConfigError) done(400, err.toJSON());
        else if (err instanceof ConflictError) done(err.status, err.toJSON());
        else if (err instanceof HttpError) done(err.status, { error: err.message }, { ...err.headers, connection: 'close' });
        else {
          const e = err as Error;
          logger?.error({ err: e, method, url: req.url }, 'engine error');
          done(500, { error: e?.message ?? String(err) });
        }
      });
  };
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve, reject) => {
    const c = net.connect(socketPath);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
  if (alive) throw new Error(`${socketPath} is in use by a running process (another l2tpd?)`);
  fs.unlinkSync(socketPath);
}

export interface ApiServerOptions {
  /** Environment to read LISTEN_FDS/LISTEN_PID from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Requests wait for this (see createApiHandler). */
  ready?: Promise<unknown>;
}

/** True when systemd handed us exactly one listening socket as fd 3. */
export function socketActivated(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.LISTEN_FDS === '1' && env.LISTEN_PID === String(process.pid);
}

/**
 * Listen on `socketPath` (stale socket removed, parent directory created 0750, socket chmod
 * 0660), or on fd 3 under systemd socket activation. Resolves once listening.
 */
export async function startApiServer(
  socketPath: string,
  engine: Engine,
  logger?: ApiLogger,
  options: ApiServerOptions = {},
): Promise<http.Server> {
  const env = options.env ?? process.env;
  const server = http.createServer(createApiHandler(engine, logger, options.ready));
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  const activated = socketActivated(env);
  if (!activated && socketPathTooLong(socketPath)) {
    throw new Error(`socket path ${socketPath} is too long (${Buffer.byteLength(socketPath)} bytes; at most ${MAX_SOCKET_PATH})`);
  }
  if (activated) {
    delete env.LISTEN_FDS;
    delete env.LISTEN_PID;
    delete env.LISTEN_FDNAMES;
  } else {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: SOCKET_DIR_MODE });
    await removeStaleSocket(socketPath);
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(activated ? { fd: 3 } : { path: socketPath }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  if (!activated) fs.chmodSync(socketPath, SOCKET_MODE);
  logger?.info({ socket: activated ? 'fd:3 (systemd)' : socketPath }, 'control API listening');
  return server;
}
