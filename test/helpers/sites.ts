/**
 * Two-site fixture: namespaces siteA and siteB joined by a veth underlay (192.0.2.1/2 and
 * 2001:db8::1/2), an l2tpd in each, and per-session host namespaces bridged to the session
 * interfaces. Uses the built daemon and CLI (dist/), so run `npm run build` first (npm test does).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createNetns, deleteNetns, nsExec, nsRun, sleep, stopProcess, uniqueName, vethBetween } from './netns.js';
import { ROOT } from './paths.js';

// Re-exported for the integration tests that take it from here with the fixture.
export { sleep };

export const DAEMON = path.join(ROOT, 'dist', 'daemon', 'main.js');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

export const UNDERLAY = {
  a4: '192.0.2.1', b4: '192.0.2.2', a6: '2001:db8::1', b6: '2001:db8::2',
};

/**
 * `add tunnel` words with tunnel_id = peer_tunnel_id = id; the UDP ports only with encap udp
 * (`ports` is [udp_sport, udp_dport]).
 */
export function tunnelWords(id: number, encap: 'udp' | 'ip', local: string, remote: string, ports: [number, number]): string[] {
  const w = ['add', 'tunnel', 'tunnel_id', String(id), 'peer_tunnel_id', String(id), 'encap', encap, 'local', local, 'remote', remote];
  if (encap === 'udp') w.push('udp_sport', String(ports[0]), 'udp_dport', String(ports[1]));
  return w;
}

export interface Daemon {
  ns: string;
  dir: string;
  socket: string;
  config: string;
  proc: ChildProcess | null;
  log: string[];
}

export interface CliResult { status: number; stdout: string; stderr: string }

/** A daemon to run in `ns`, its socket and config file in `dir` (created by l2tpd when missing). */
export function newDaemon(ns: string, dir: string): Daemon {
  return { ns, dir, socket: path.join(dir, 'l2tpd.sock'), config: path.join(dir, 'l2tpd.json'), proc: null, log: [] };
}

/** Start (or restart) a daemon and wait until its API answers. */
export async function startDaemon(d: Daemon, extra: string[] = []): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', d.ns, process.execPath, DAEMON, '--config', d.config,
    '--socket', d.socket, '--metrics-listen', 'off', '--log-level', 'debug', ...extra],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  d.proc = proc;
  const collect = (b: Buffer) => { d.log.push(...b.toString().split('\n').filter(Boolean)); };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`l2tpd exited ${proc.exitCode}: ${d.log.join('\n')}`);
    if (existsSync(d.socket) && l2tpctl(d, ['show', 'tunnel']).status === 0) return;
    await sleep(100);
  }
  throw new Error(`l2tpd did not become ready: ${d.log.join('\n')}`);
}

export async function stopDaemon(d: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const proc = d.proc;
  if (!proc) return null;
  const code = await stopProcess(proc, signal, 8000);
  d.proc = null;
  return code;
}

export function l2tpctl(d: Daemon, words: string[]): CliResult {
  const r = spawnSync(process.execPath, [CLI, '--socket', d.socket, ...words], { encoding: 'utf8', timeout: 20000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Run l2tpctl and fail loudly if it did not exit 0. */
export function l2tpctlOk(d: Daemon, words: string[]): string {
  const r = l2tpctl(d, words);
  if (r.status !== 0) throw new Error(`l2tpctl ${words.join(' ')} -> ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export function l2tpctlJson<T = unknown>(d: Daemon, words: string[]): T {
  return JSON.parse(l2tpctlOk(d, ['-j', ...words])) as T;
}

export class Sites {
  readonly a: Daemon;
  readonly b: Daemon;
  private readonly namespaces: string[] = [];
  private readonly tmp: string;

  constructor(underlayMtu = 1500) {
    this.tmp = mkdtempSync(path.join(os.tmpdir(), 'l2tpd-test-'));
    const nsA = this.ns('sa');
    const nsB = this.ns('sb');
    vethBetween(nsA, 'ul0', `${UNDERLAY.a4}/24`, nsB, 'ul0', `${UNDERLAY.b4}/24`, underlayMtu);
    nsExec(nsA, 'ip', ['-6', 'addr', 'add', `${UNDERLAY.a6}/64`, 'dev', 'ul0', 'nodad']);
    nsExec(nsB, 'ip', ['-6', 'addr', 'add', `${UNDERLAY.b6}/64`, 'dev', 'ul0', 'nodad']);
    this.a = this.daemon(nsA, 'a');
    this.b = this.daemon(nsB, 'b');
  }

  ns(prefix: string): string {
    const n = createNetns(prefix);
    this.namespaces.push(n);
    return n;
  }

  private daemon(ns: string, tag: string): Daemon {
    return newDaemon(ns, path.join(this.tmp, tag));
  }

  /** Start (or restart) a daemon and wait until its API answers. */
  start(d: Daemon, extra: string[] = []): Promise<void> { return startDaemon(d, extra); }
  stop(d: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> { return stopDaemon(d, signal); }
  cli(d: Daemon, words: string[]): CliResult { return l2tpctl(d, words); }
  /** Run l2tpctl and fail loudly if it did not exit 0. */
  ok(d: Daemon, words: string[]): string { return l2tpctlOk(d, words); }
  json<T = unknown>(d: Daemon, words: string[]): T { return l2tpctlJson<T>(d, words); }

  /**
   * GET /v1/<what> through curl: for polling, where l2tpctl (a node process per call) is too slow
   * on a busy machine. `what` is 'tunnels' or 'sessions' (with a query string if needed).
   */
  api<T = unknown>(d: Daemon, what: string): T[] {
    const r = spawnSync('curl', ['-sS', '--max-time', '5', '--unix-socket', d.socket, `http://l2tpd/v1/${what}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`curl /v1/${what}: ${r.stderr}`);
    return (JSON.parse(r.stdout) as Record<string, T[]>)[what.replace(/\?.*$/, '')];
  }

  /**
   * A host namespace behind a session: veth into a bridge in the site namespace. The bridge is
   * created here (pre-existing, so l2tpd must use it as is); pass its name as the session's
   * `bridge` word.
   */
  hostMtu = 1400;

  host(site: Daemon, bridge: string, address: string): string {
    const h = this.ns('h');
    const ifSite = uniqueName('hv');
    if (nsRun(site.ns, 'ip', ['link', 'show', bridge]).status !== 0) {
      nsExec(site.ns, 'ip', ['link', 'add', bridge, 'type', 'bridge']);
      nsExec(site.ns, 'ip', ['link', 'set', bridge, 'up']);
    }
    spawnSync('ip', ['link', 'add', 'eth0', 'netns', h, 'type', 'veth', 'peer', 'name', ifSite, 'netns', site.ns]);
    nsExec(site.ns, 'ip', ['link', 'set', ifSite, 'master', bridge, 'up']);
    const v6 = address.includes(':');
    nsExec(h, 'ip', [...(v6 ? ['-6'] : []), 'addr', 'add', address, 'dev', 'eth0', ...(v6 ? ['nodad'] : [])]);
    // Hosts use an MTU every matrix session carries without outer fragmentation (the default
    // session MTU is as low as 1418 for UDP/IPv6 with an 8-byte cookie).
    nsExec(h, 'ip', ['link', 'set', 'eth0', 'mtu', String(this.hostMtu), 'up']);
    return h;
  }

  /** ping from a namespace; returns received count. Bounded: count packets, short deadline. */
  ping(ns: string, to: string, count = 3, deadline = 6): number {
    const r = nsRun(ns, 'ping', ['-c', String(count), '-i', '0.2', '-w', String(deadline), '-q', to], (deadline + 5) * 1000);
    const m = /(\d+) (?:packets )?received/.exec(r.stdout ?? '');
    return m ? Number(m[1]) : 0;
  }

  configFile(d: Daemon): unknown {
    return JSON.parse(readFileSync(d.config, 'utf8'));
  }

  async close(): Promise<void> {
    await this.stop(this.a).catch(() => undefined);
    await this.stop(this.b).catch(() => undefined);
    for (const n of this.namespaces.reverse()) deleteNetns(n);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
