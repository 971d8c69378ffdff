#!/usr/bin/env node
/**
 * l2tpctl — the command line of l2tpd: `ip l2tp` words in, HTTP/JSON over the daemon's UNIX
 * socket out (README "l2tpctl"). Exit status: 0 done; 1 refused by the daemon or daemon
 * unreachable (the message says which); 2 usage error.
 *
 * `main(argv, io)` does everything and returns the exit code, so tests run it in-process.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { Command, CommanderError } from 'commander';
import {
  DEFAULT_SOCKET, MAX_SOCKET_PATH, socketPathTooLong, type SessionView, type TunnelView,
} from '../control/api.js';
import type { Config, SessionConfig, TunnelConfig } from '../control/model.js';
import { TUNNEL_WORDS } from '../control/tunnel-words.js';
import { SESSION_WORDS } from '../control/session-words.js';
import { escapeControl } from '../control/errors.js';
import { packageVersion } from '../control/version.js';
import { formatJson, formatKeyValues, formatSessions, formatTunnels } from './format.js';
import { complete, socketOption, type CompletionSource } from './complete.js';
import { formatFinding, planImport, type SourceFile } from './import.js';
import { STATS_FLAGS, USAGE, UsageError, parseCommand, type ParsedCommand } from './words.js';

export { DEFAULT_SOCKET };
export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

export interface Writer {
  write(chunk: string): unknown;
}

export interface CliIO {
  env?: NodeJS.ProcessEnv;
  stdout?: Writer;
  stderr?: Writer;
  /**
   * Give up waiting for the daemon after this long (default 30 s). Not for `reload`: applying a
   * file that starts thousands of sessions takes longer, and `systemctl reload` (ExecReload) must
   * report what the daemon did, not that the client gave up while the daemon goes on applying it.
   */
  timeoutMs?: number;
}

/** The daemon could not be reached at all (vs. answered with a refusal). */
export class UnreachableError extends Error {
  constructor(readonly socketPath: string, readonly code: string) {
    super(`cannot reach l2tpd at ${socketPath}: ${code} (${UnreachableError.hint(code)})`);
  }

  static hint(code: string): string {
    if (code === 'EACCES' || code === 'EPERM') return 'permission denied; run as root or as a member of the socket\'s group';
    if (code === 'ETIMEDOUT') return 'the daemon did not answer in time';
    if (code === 'ENAMETOOLONG') return `socket paths are limited to ${MAX_SOCKET_PATH} bytes`;
    return 'is the daemon running?';
  }
}

/** The daemon answered with a non-2xx status. */
export class RefusedError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    const msg = typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string'
      ? (body as { error: string }).error
      : `HTTP ${status}`;
    super(status >= 500 ? `l2tpd failed: ${msg}` : `refused by l2tpd: ${msg}`);
  }
}

interface Reply {
  status: number;
  body: unknown;
}

/**
 * One HTTP request over the UNIX socket; resolves with any status, rejects when unreachable or
 * when the socket is idle for timeoutMs (0: wait for the answer however long it takes).
 */
export function apiRequest(socketPath: string, method: string, urlPath: string, body?: unknown, timeoutMs = 30_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    if (socketPathTooLong(socketPath)) {
      reject(new UnreachableError(socketPath, 'ENAMETOOLONG'));
      return;
    }
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({
      socketPath,
      method,
      path: urlPath,
      headers: {
        host: 'l2tpd',
        accept: 'application/json',
        ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err: NodeJS.ErrnoException) => reject(new UnreachableError(socketPath, err.code ?? err.message)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text === '' ? {} : JSON.parse(text);
        } catch {
          parsed = { error: text.trim() || `HTTP ${res.statusCode}` };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new UnreachableError(socketPath, err.code ?? err.message)));
    req.end(payload);
  });
}

/** Normalise iproute2-style single-dash long options before commander sees them. */
function preprocess(argv: string[]): { args: string[]; stats: boolean } {
  const args: string[] = [];
  let stats = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (STATS_FLAGS.has(a)) stats = true;
    else if (a === '-json') args.push('--json');
    else args.push(a);
  }
  return { args, stats };
}

type Call = (method: string, urlPath: string, body?: unknown) => Promise<unknown>;

function caller(socketPath: string, timeoutMs: number): Call {
  return async (method, urlPath, body) => {
    const reply = await apiRequest(socketPath, method, urlPath, body, timeoutMs);
    if (reply.status < 200 || reply.status >= 300) throw new RefusedError(reply.status, reply.body);
    return reply.body;
  };
}

/** The configuration that runs, in the config file's fields (the views carry state and counters too). */
async function runningConfig(call: Call): Promise<Config> {
  const pick = <T>(view: Record<string, unknown>, fields: readonly string[]) =>
    Object.fromEntries(fields.filter((f) => view[f] !== undefined).map((f) => [f, view[f]])) as T;
  const tunnels = ((await call('GET', '/v1/tunnels')) as { tunnels: TunnelView[] }).tunnels;
  const sessions = ((await call('GET', '/v1/sessions')) as { sessions: SessionView[] }).sessions;
  return {
    tunnels: tunnels.map((t) => pick<TunnelConfig>(t, TUNNEL_WORDS.map((w) => w.word))),
    // The interface a session has is the name an imported one must not take.
    sessions: sessions.map((x) => pick<SessionConfig>({ ...x, name: x.interface ?? x.name }, SESSION_WORDS.map((w) => w.word))),
  };
}

/**
 * `import [--dry-run] FILE...`: plan from the files on top of what runs; print the plan
 * (--dry-run) or add it entry by entry, removing what was added if the daemon refuses one.
 */
async function runImport(params: { files: string[]; dryRun: boolean }, call: Call, socketPath: string, json: boolean, out: Writer, err: Writer): Promise<number> {
  const files: SourceFile[] = [];
  for (const name of params.files) {
    try {
      files.push({ name, text: fs.readFileSync(name === '-' ? 0 : name, 'utf8') });
    } catch (e) {
      err.write(`l2tpctl: import: cannot read ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      return EXIT_USAGE;
    }
  }
  let existing: Config | undefined;
  try {
    existing = await runningConfig(call);
  } catch (e) {
    if (!params.dryRun || !(e instanceof UnreachableError)) throw e;
    err.write(`l2tpctl: import: note: ${e.message}; checked without the running configuration\n`);
  }
  const plan = planImport(files, existing);
  for (const n of plan.notes) err.write(`l2tpctl: import: note: ${formatFinding(n)}\n`);
  if (plan.problems.length > 0) {
    for (const p of plan.problems) err.write(`l2tpctl: import: ${formatFinding(p)}\n`);
    err.write(`l2tpctl: import: ${plan.problems.length} problem${plan.problems.length === 1 ? '' : 's'}; nothing was applied\n`);
    return EXIT_USAGE;
  }
  if (params.dryRun) {
    out.write(formatJson(plan.config));
    return EXIT_OK;
  }
  const added: Array<() => Promise<unknown>> = [];
  const steps = [
    ...plan.config.tunnels.map((t, i) => ({ origin: plan.origins.tunnels[i], add: () => call('POST', '/v1/tunnels', t),
      undo: () => call('DELETE', `/v1/tunnels/${t.tunnel_id}`) })),
    ...plan.config.sessions.map((x, i) => ({ origin: plan.origins.sessions[i], add: () => call('POST', '/v1/sessions', x),
      undo: () => call('DELETE', `/v1/tunnels/${x.tunnel_id}/sessions/${x.session_id}`) })),
  ];
  for (const step of steps) {
    try {
      await step.add();
      added.push(step.undo);
    } catch (e) {
      err.write(`l2tpctl: import: ${formatFinding(step.origin)}: ${(e as Error).message}\n`);
      for (const undo of added.reverse()) {
        try { await undo(); } catch (u) {
          err.write(`l2tpctl: import: could not remove what was added before: ${(u as Error).message}\n`);
          return EXIT_REFUSED;
        }
      }
      err.write(`l2tpctl: import: nothing was applied${added.length ? ` (the ${added.length} added before were removed)` : ''}\n`);
      return EXIT_REFUSED;
    }
  }
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  out.write(json ? formatJson(plan.config)
    : `imported ${count(plan.config.tunnels.length, 'tunnel')} and ${count(plan.config.sessions.length, 'session')} into l2tpd at ${socketPath}\n`);
  return EXIT_OK;
}

async function run(cmd: ParsedCommand, call: Call, json: boolean, out: Writer): Promise<void> {
  switch (cmd.object) {
    case 'help':
      out.write(USAGE);
      return;
    case 'daemon': {
      const result = cmd.command === 'reload' ? await call('POST', '/v1/reload') : await call('GET', '/v1/status');
      out.write(json ? formatJson(result) : formatKeyValues((result ?? {}) as Record<string, unknown>));
      return;
    }
    case 'tunnel': {
      if (cmd.command === 'add' || cmd.command === 'del') {
        const result = cmd.command === 'add'
          ? await call('POST', '/v1/tunnels', cmd.params)
          : await call('DELETE', `/v1/tunnels/${cmd.params.tunnel_id}`);
        if (json) out.write(formatJson(result));
        return;
      }
      const list = cmd.params.tunnel_id === undefined
        ? ((await call('GET', '/v1/tunnels')) as { tunnels: TunnelView[] }).tunnels
        : [(await call('GET', `/v1/tunnels/${cmd.params.tunnel_id}`)) as TunnelView];
      out.write(json ? formatJson(list) : formatTunnels(list, { stats: cmd.params.stats }));
      return;
    }
    case 'session': {
      if (cmd.command === 'add' || cmd.command === 'del') {
        const result = cmd.command === 'add'
          ? await call('POST', '/v1/sessions', cmd.params)
          : await call('DELETE', `/v1/tunnels/${cmd.params.tunnel_id}/sessions/${cmd.params.session_id}`);
        if (json) out.write(formatJson(result));
        return;
      }
      const q = new URLSearchParams();
      if (cmd.params.tunnel_id !== undefined) q.set('tunnel_id', String(cmd.params.tunnel_id));
      if (cmd.params.session_id !== undefined) q.set('session_id', String(cmd.params.session_id));
      if (cmd.params.stats) q.set('stats', '1');
      const qs = q.toString();
      const list = ((await call('GET', `/v1/sessions${qs ? `?${qs}` : ''}`)) as { sessions: SessionView[] }).sessions;
      if (!json && list.some((s) => s.peer_tunnel_id === undefined)) {
        // "Peer session X, tunnel Y" needs the tunnel's peer id; SessionView.peer_tunnel_id is
        // optional (l2tpd's engine always sets it, other Engine implementations may not).
        const tunnels = ((await call('GET', '/v1/tunnels')) as { tunnels: TunnelView[] }).tunnels;
        for (const s of list) {
          s.peer_tunnel_id ??= tunnels.find((t) => t.tunnel_id === s.tunnel_id)?.peer_tunnel_id;
        }
      }
      out.write(json ? formatJson(list) : formatSessions(list, { stats: cmd.params.stats }));
      return;
    }
  }
}

/** What completion asks: the daemon at `socketPath` (briefly: a slow answer is no answer) and /sys. */
function completionSource(socketPath: string): CompletionSource {
  const call = caller(socketPath, 1500);
  const sorted = (ids: number[]) => [...new Set(ids)].sort((a, b) => a - b);
  return {
    tunnelIds: async () => sorted(((await call('GET', '/v1/tunnels')) as { tunnels: TunnelView[] }).tunnels.map((x) => x.tunnel_id)),
    sessionIds: async (tid) => sorted(((await call('GET', `/v1/sessions${tid === undefined ? '' : `?tunnel_id=${tid}`}`)) as
      { sessions: SessionView[] }).sessions.map((x) => x.session_id)),
    interfaces: (bridges) => fs.readdirSync('/sys/class/net')
      .filter((n) => !bridges || fs.existsSync(`/sys/class/net/${n}/bridge`)).sort(),
  };
}

/** Run l2tpctl with `argv` (without node and script) and return the exit status. */
export async function main(argv: string[], io: CliIO = {}): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.stdout ?? process.stdout;
  const err = io.stderr ?? process.stderr;
  // The hidden helper of completion/l2tpctl.bash: `__complete CWORD WORD...` (COMP_CWORD, COMP_WORDS).
  if (argv[0] === '__complete') {
    const words = argv.slice(2);
    const socketPath = socketOption(words) ?? (env.L2TPD_SOCKET || DEFAULT_SOCKET);
    for (const c of await complete(words, Number(argv[1]), completionSource(socketPath))) out.write(`${c}\n`);
    return EXIT_OK;
  }
  const { args, stats } = preprocess(argv);
  let words: string[] = [];
  let opts: { socket?: string; json?: boolean } = {};

  const program = new Command('l2tpctl')
    .usage('[--socket PATH] [-j|--json] OBJECT COMMAND WORDS...')
    .description('Control l2tpd with the words of `ip l2tp`.')
    .option('--socket <path>', `control socket of l2tpd (env L2TPD_SOCKET, default ${DEFAULT_SOCKET})`)
    .option('-j, --json', 'print complete objects as JSON')
    .version(packageVersion(), '-V, --version')
    .argument('[words...]', 'OBJECT COMMAND WORDS (see below)')
    .allowUnknownOption()
    .allowExcessArguments()
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.write(s), writeErr: (s) => err.write(s) })
    .addHelpText('after', `\n${USAGE}`)
    .action((w: string[], o: { socket?: string; json?: boolean }) => {
      words = w;
      opts = o;
    });

  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; real option errors are usage errors.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    throw e;
  }
  if (words[0] === '--') words = words.slice(1);
  if (stats) words = [...words, '-s'];

  let cmd: ParsedCommand;
  try {
    cmd = parseCommand(words);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`l2tpctl: ${escapeControl(e.message)}\nTry "l2tpctl --help".\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  const socketPath = opts.socket ?? (env.L2TPD_SOCKET || DEFAULT_SOCKET);
  const call = caller(socketPath, cmd.object === 'daemon' && cmd.command === 'reload' ? 0 : io.timeoutMs ?? 30_000);
  try {
    if (cmd.object === 'import') return await runImport(cmd.params, call, socketPath, opts.json === true, out, err);
    await run(cmd, call, opts.json === true, out);
    return EXIT_OK;
  } catch (e) {
    // Unreachable, refused, or anything else: the message, exit 1.
    err.write(`l2tpctl: ${escapeControl((e as Error).message ?? String(e))}\n`);
    return EXIT_REFUSED;
  }
}

if (require.main === module) {
  // `l2tpctl show session | head`: a reader that goes away is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? EXIT_OK);
  });
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`l2tpctl: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = EXIT_REFUSED;
    },
  );
}
