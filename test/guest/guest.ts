/**
 * A guest's lifecycle: boot QEMU (inside a network namespace when its taps belong there), wait
 * for the command agent, run commands, and stop it. Every QEMU this process starts is killed by
 * PID, and its directory removed, at teardown or when the process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cacheDir } from './cache.js';
import { CommandChannel, type RunOptions, type RunResult } from './channel.js';
import { Initramfs } from './initramfs.js';
import type { GuestKernel } from './kernel.js';
import { QEMU, qemuArgv, type Accel, type Machine } from './qemu.js';

export interface GuestOptions extends Omit<Machine, 'accel' | 'agentSocket' | 'ports'> {
  /** Label in errors and in the guest's directory name. */
  name: string;
  /** Run QEMU in this network namespace (its taps are created there). */
  netns?: string;
  /** Default: detectAccel()'s verdict. */
  accel?: Accel;
  /** Wire up the command agent and wait for it (default true). Without it, boot returns at once. */
  agent?: boolean;
  /** How long boot may take until the agent answers (default 120 s). */
  bootTimeoutMs?: number;
  /** Names of more virtio-serial ports; the host end of each is `guest.port(name)`. */
  ports?: string[];
}

const live = new Set<Guest>();
process.on('exit', () => { for (const g of live) g.killNow(); });

/** Console bytes kept in memory per guest. */
const CONSOLE_KEEP = 1 << 20;

export class Guest {
  private consoleText = '';
  private exitWaiters: ((code: number | null) => void)[] = [];
  private channel?: CommandChannel;
  private readonly portEnds = new Map<string, Promise<net.Socket>>();
  private readonly portServers: net.Server[] = [];
  /** Milliseconds from QEMU's start until the agent answered. */
  bootMs = 0;

  private constructor(readonly name: string, readonly dir: string, readonly proc: ChildProcess, readonly accel: Accel) {
    const keep = (b: Buffer) => { this.consoleText = (this.consoleText + b.toString('latin1')).slice(-CONSOLE_KEEP); };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.on('exit', (code) => { for (const w of this.exitWaiters.splice(0)) w(code); });
  }

  static async boot(o: GuestOptions): Promise<Guest> {
    const accel = o.accel ?? (await detectAccel(o.kernel)).accel;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `l2tpd-guest-${o.name}-`));
    const agentSocket = path.join(dir, 'agent.sock');
    const server = o.agent === false ? undefined : net.createServer();
    const connected = server && new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    if (server) await new Promise<void>((resolve, reject) => server.once('error', reject).listen(agentSocket, resolve));
    // QEMU connects to each port's socket at start, as to the agent's.
    const ports = await Promise.all((o.ports ?? []).map(async (name, i) => {
      const socket = path.join(dir, `port${i}.sock`);
      const srv = net.createServer();
      const end = new Promise<net.Socket>((resolve) => srv.once('connection', (c) => { srv.close(); resolve(c); }));
      await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(socket, resolve));
      return { name, socket, srv, end };
    }));
    const argv = qemuArgv({ ...o, accel, agentSocket: server ? agentSocket : undefined, ports: ports.map(({ name, socket }) => ({ name, socket })) });
    const cmd = o.netns ? ['ip', ['netns', 'exec', o.netns, QEMU, ...argv]] as const : [QEMU, argv] as const;
    const started = Date.now();
    const proc = spawn(cmd[0], [...cmd[1]], { stdio: ['ignore', 'pipe', 'pipe'] });
    const g = new Guest(o.name, dir, proc, accel);
    for (const p of ports) { g.portEnds.set(p.name, p.end); g.portServers.push(p.srv); }
    live.add(g);
    if (!server) return g;
    try {
      const timeoutMs = o.bootTimeoutMs ?? 120000;
      const outcome = await Promise.race([
        (async () => {
          const sock = await connected!;
          server.close();
          g.channel = new CommandChannel(sock);
          await g.channel.whenReady();
          return 'ready' as const;
        })(),
        g.waitExit().then((code) => `QEMU exited with ${code}` as const),
        new Promise<string>((r) => setTimeout(() => r(`no answer from the guest agent within ${timeoutMs} ms`), timeoutMs).unref()),
      ]);
      if (outcome !== 'ready') throw new Error(`guest ${o.name} did not boot: ${outcome}\n--- console ---\n${g.console.slice(-6000)}`);
      g.bootMs = Date.now() - started;
      return g;
    } catch (e) {
      server.close();
      const output = g.console;
      await g.close();
      // The console says why (a failed mount, a panic, an agent that could not start).
      if ((e as Error).message.includes('--- console ---')) throw e;
      throw new Error(`guest ${o.name} did not boot: ${(e as Error).message}\n--- console ---\n${output.slice(-6000)}`);
    }
  }

  /** Everything QEMU and the guest's console printed so far (the last MiB). */
  get console(): string { return this.consoleText; }

  get running(): boolean { return this.proc.exitCode === null && this.proc.signalCode === null; }

  /** The host end of a port named in `ports` (QEMU connects it while starting). */
  port(name: string): Promise<net.Socket> {
    const end = this.portEnds.get(name);
    return end ?? Promise.reject(new Error(`guest ${this.name} has no port ${name}`));
  }

  /** Run a shell script in the guest; never throws for a non-zero status. */
  run(script: string, opts?: RunOptions): Promise<RunResult> {
    if (!this.channel) return Promise.reject(new Error(`guest ${this.name} has no command agent`));
    return this.channel.run(script, opts);
  }

  /** Run a script and return its stdout; a non-zero status throws with the script and stderr. */
  async ok(script: string, opts?: RunOptions): Promise<string> {
    const r = await this.run(script, opts);
    if (r.status !== 0) throw new Error(`guest ${this.name}: exit ${r.status}: ${script}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Resolves with QEMU's exit code (null when killed by a signal) once it has exited. */
  waitExit(timeoutMs?: number): Promise<number | null> {
    if (!this.running) return Promise.resolve(this.proc.exitCode);
    return new Promise((resolve, reject) => {
      this.exitWaiters.push(resolve);
      if (timeoutMs !== undefined) setTimeout(() => reject(new Error(`guest ${this.name} still running after ${timeoutMs} ms`)), timeoutMs).unref();
    });
  }

  /** Power the guest off (through the agent if there is one), then make sure QEMU is gone. */
  async close(graceMs = 3000): Promise<void> {
    if (this.running && this.channel) {
      this.channel.run('poweroff -f', { timeoutMs: graceMs }).catch(() => undefined);
      await this.waitExit(graceMs).catch(() => undefined);
    }
    if (this.running) {
      this.proc.kill('SIGTERM');
      await this.waitExit(graceMs).catch(() => undefined);
    }
    this.killNow();
  }

  /** Synchronous last resort (process exit): SIGKILL by PID, remove the directory. */
  killNow(): void {
    if (this.running) try { this.proc.kill('SIGKILL'); } catch { /* gone */ }
    this.channel?.close();
    for (const srv of this.portServers) srv.close();
    for (const end of this.portEnds.values()) void end.then((c) => c.destroy());
    fs.rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

/**
 * KVM when it really boots a guest here, TCG otherwise. /dev/kvm can exist and still be unusable
 * (a nested or paravirtual host: QEMU aborts, or the guest hangs early in boot), so the verdict
 * comes from booting this kernel with a 4-line init under KVM with a 12 s deadline (a working KVM boots it in one or two). It is cached per
 * host kernel, QEMU binary and guest kernel. L2TPD_GUEST_ACCEL=kvm|tcg overrides.
 */
export async function detectAccel(kernel: GuestKernel | string): Promise<{ accel: Accel; reason: string }> {
  const forced = process.env.L2TPD_GUEST_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: `L2TPD_GUEST_ACCEL=${forced}` };
  try { fs.closeSync(fs.openSync('/dev/kvm', 'r+')); } catch (e) {
    return { accel: 'tcg', reason: `/dev/kvm not usable (${(e as NodeJS.ErrnoException).code})` };
  }
  const vmlinuz = typeof kernel === 'string' ? kernel : kernel.vmlinuz;
  const qemuPath = spawnSync('sh', ['-c', `command -v ${QEMU}`], { encoding: 'utf8' }).stdout.trim();
  const stamp = [os.release(), qemuPath, vmlinuz].map((p) => {
    try { const st = fs.statSync(p); return `${p}:${st.size}:${st.mtimeMs}`; } catch { return p; }
  }).join('|');
  const verdictFile = path.join(cacheDir(), `accel-${createHash('sha256').update(stamp).digest('hex').slice(0, 16)}.json`);
  try { return JSON.parse(fs.readFileSync(verdictFile, 'utf8')) as { accel: Accel; reason: string }; } catch { /* not yet probed */ }

  const probe = new Initramfs().binary('/bin/busybox').symlink('/bin/sh', 'busybox')
    .text('/init', '#!/bin/sh\necho L2TPD-KVM-PROBE-OK\n/bin/busybox poweroff -f\n', 0o755);
  const initrd = probe.write(cacheDir());
  const proc = spawn(QEMU, qemuArgv({ kernel: vmlinuz, initrd, accel: 'kvm', append: ['quiet'], memoryMb: 256 }), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  proc.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await Promise.race([exited, new Promise((r) => setTimeout(r, 12000))]);
  if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; }
  const verdict = out.includes('L2TPD-KVM-PROBE-OK')
    ? { accel: 'kvm' as const, reason: 'a probe guest booted under KVM' }
    : { accel: 'tcg' as const, reason: `KVM did not boot a probe guest: ${out.trim().split('\n').slice(-1)[0] ?? 'no output'}` };
  fs.writeFileSync(`${verdictFile}.${process.pid}.tmp`, JSON.stringify(verdict));
  fs.renameSync(`${verdictFile}.${process.pid}.tmp`, verdictFile);
  return verdict;
}
