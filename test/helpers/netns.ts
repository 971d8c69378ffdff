/**
 * Network-namespace fixtures for tests that need root. Every name is unique to this process,
 * every namespace is removed by name in teardown (and on exit), and nothing outside the
 * namespaces is touched. Addresses used inside are documentation ranges only.
 */
import { execFileSync, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';

let counter = 0;
const created = new Set<string>();

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** A reason to skip, or false when namespaces can be created here. */
export function netnsUnavailable(): string | false {
  if (!isRoot) return 'needs root to create network namespaces';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'iproute2 `ip netns` is not available';
  return false;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Can this kernel create an 802.1Q interface? Tried on a veth in a throwaway namespace. */
export function vlanSupported(): boolean {
  const ns = createNetns('vq');
  try {
    nsExec(ns, 'ip', ['link', 'add', 'vq0', 'type', 'veth', 'peer', 'name', 'vq1']);
    return nsRun(ns, 'ip', ['link', 'add', 'link', 'vq0', 'name', 'vq0.5', 'type', 'vlan', 'id', '5']).status === 0;
  } finally {
    deleteNetns(ns);
  }
}

/** Short unique name (interface names are limited to 15 bytes). */
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid % 10000}x${counter++}`;
}

export function createNetns(prefix = 'l2t'): string {
  const name = uniqueName(prefix);
  execFileSync('ip', ['netns', 'add', name]);
  created.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export function deleteNetns(name: string): void {
  spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout
    ?.split('\n').filter(Boolean).forEach((pid) => {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    });
  spawnSync('ip', ['netns', 'del', name]);
  created.delete(name);
}

process.on('exit', () => { for (const ns of [...created]) deleteNetns(ns); });

/** Run a command inside the namespace; throws with stderr on failure. */
export function nsExec(ns: string, cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8', input: opts.input, timeout: opts.timeoutMs ?? 30000,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Like nsExec but never throws: returns status, stdout and stderr. */
export function nsRun(ns: string, cmd: string, args: string[], timeoutMs = 30000): SpawnSyncReturns<string> {
  return spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
}

/** Create a veth pair between two namespaces and address both ends. */
export function vethBetween(nsA: string, ifA: string, addrA: string, nsB: string, ifB: string, addrB: string, mtu = 1500): void {
  execFileSync('ip', ['link', 'add', ifA, 'netns', nsA, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB, 'mtu', String(mtu)]);
  for (const [ns, ifn, addr] of [[nsA, ifA, addrA], [nsB, ifB, addrB]] as const) {
    const v6 = addr.includes(':');
    execFileSync('ip', ['-n', ns, ...(v6 ? ['-6'] : []), 'addr', 'add', addr, 'dev', ifn, ...(v6 ? ['nodad'] : [])]);
    execFileSync('ip', ['-n', ns, 'link', 'set', ifn, 'up']);
  }
}

/** Send `signal`, wait up to graceMs, then SIGKILL (bounded too). Resolves to the exit code, or null if it had to be killed. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return proc.exitCode;
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try { proc.kill(signal); } catch { return proc.exitCode; }
  const code = await Promise.race([exited, sleep(graceMs).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  try { proc.kill('SIGKILL'); } catch { /* already gone */ }
  await Promise.race([exited, sleep(3000)]);
  return null;
}

/** Poll until `check` holds or `ms` pass; returns the last result. */
export async function waitUntil(check: () => boolean, ms = 10000, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(stepMs);
  }
  return check();
}

/** One link as `ip -d -j link show` prints it (the fields the tests read). */
export interface IpLink {
  ifindex: number; ifname: string; mtu: number; flags: string[]; address?: string; master?: string;
  ifalias?: string; operstate?: string; link?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

/** `ip -d -j link show dev NAME` in a namespace; undefined when there is no such link. */
export function ipLink(ns: string, ifname: string): IpLink | undefined {
  const r = spawnSync('ip', ['-n', ns, '-d', '-j', 'link', 'show', 'dev', ifname], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return (JSON.parse(r.stdout) as IpLink[])[0];
}

/** Like ipLink, but the link must exist. */
export function mustLink(ns: string, ifname: string): IpLink {
  const l = ipLink(ns, ifname);
  if (!l) throw new Error(`no link ${ifname} in namespace ${ns}`);
  return l;
}

/** MAC address of an interface in a namespace, lowercase. */
export function linkAddress(ns: string, ifname: string): string {
  const address = mustLink(ns, ifname).address;
  if (!address) throw new Error(`link ${ifname} in namespace ${ns} has no address`);
  return address.toLowerCase();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
