/**
 * SessionInterfaces over a simulated kernel (taps, links, aliases), so that l2tpd can be "killed"
 * at every step of creating a session interface. What a kill leaves must never be a persistent
 * tap without its ownership alias: no sweep could ever find it again.
 */
import t from 'tap';
import pino from 'pino';
import fs from 'node:fs';
import type { LinkInfo, SetLinkOptions } from '../../src/netlink/index.js';
import type { TapHandle } from '../../src/native/index.js';
import type { SessionConfig } from '../../src/control/model.js';
import { normalizeSession } from '../../src/control/validate.js';

interface Device { index: number; name: string; persist: boolean; alias?: string; up: boolean; mtu: number; fds: Set<number> }

/** Thrown by the simulation at the step where l2tpd "dies". */
class Killed extends Error {}

class Kernel {
  devices = new Map<string, Device>();
  private nextIndex = 10;
  private nextFd = 100;
  private readonly fdDevice = new Map<number, Device>();
  /** Steps (native and netlink calls) left before the process dies; Infinity: never. */
  stepsLeft = Infinity;
  steps = 0;
  /** Once dead, nothing the process does reaches the kernel any more (no undo runs). */
  dead = false;

  step(): void {
    if (this.dead) throw new Killed('dead');
    this.steps++;
    if (this.stepsLeft-- <= 0) {
      this.dead = true;
      throw new Killed('killed');
    }
  }

  tapOpen(name: string, persist: boolean): TapHandle {
    this.step();
    let d = this.devices.get(name);
    if (name.includes('%d')) {
      let n = 0;
      while (this.devices.has(name.replace('%d', String(n)))) n++;
      name = name.replace('%d', String(n));
      d = undefined;
    }
    if (!d) {
      d = { index: this.nextIndex++, name, persist: false, up: false, mtu: 1500, fds: new Set() };
      this.devices.set(name, d);
    }
    const fd = this.nextFd++;
    d.fds.add(fd);
    this.fdDevice.set(fd, d);
    if (persist) d.persist = true;
    return { fd, name, offload: false };
  }

  tapSetPersist(fd: number, persist: boolean): void {
    this.step();
    const d = this.fdDevice.get(fd);
    if (!d) throw Object.assign(new Error('EBADFD'), { code: 'EBADFD' });
    d.persist = persist;
  }

  close(fd: number): void {
    if (this.dead) throw new Killed('dead');
    this.release(fd);
  }

  private release(fd: number): void {
    const d = this.fdDevice.get(fd);
    this.fdDevice.delete(fd);
    if (!d) return;
    d.fds.delete(fd);
    // A tap that is not persistent goes with its last fd, as the kernel's tun driver does.
    if (d.fds.size === 0 && !d.persist) this.devices.delete(d.name);
  }

  /** The process died: the kernel closes every fd it had. */
  exit(): void {
    for (const fd of [...this.fdDevice.keys()]) this.release(fd);
  }

  link(d: Device): LinkInfo {
    return { index: d.index, name: d.name, mtu: d.mtu, up: d.up, kind: 'tun', operstate: d.up ? 'up' : 'down', ...(d.alias ? { alias: d.alias } : {}) };
  }

  find(ref: string | number): Device | undefined {
    return typeof ref === 'number' ? [...this.devices.values()].find((d) => d.index === ref) : this.devices.get(ref);
  }
}

let kernel = new Kernel();

const fakeNative = {
  tapOpen: (name: string, persist: boolean) => kernel.tapOpen(name, persist),
  tapSetPersist: (fd: number, persist: boolean) => kernel.tapSetPersist(fd, persist),
  close: (fd: number) => kernel.close(fd),
};

/** fs.close as the libuv pool runs it: on a later turn, into the fake kernel. Records each fd. */
const pooledCloses: number[] = [];
const fakeFs = {
  ...fs,
  close: (fd: number, cb: (err: Error | null) => void) => setImmediate(() => {
    pooledCloses.push(fd);
    try { kernel.close(fd); cb(null); } catch (err) { cb(err as Error); }
  }),
};

const fakeRtnl = {
  async listLinks(): Promise<LinkInfo[]> { kernel.step(); return [...kernel.devices.values()].map((d) => kernel.link(d)); },
  async linkByName(name: string): Promise<LinkInfo | undefined> { kernel.step(); const d = kernel.find(name); return d && kernel.link(d); },
  async linkByIndex(index: number): Promise<LinkInfo | undefined> { kernel.step(); const d = kernel.find(index); return d && kernel.link(d); },
  async setLink(ref: string | number, opts: SetLinkOptions): Promise<void> {
    kernel.step();
    const d = kernel.find(ref);
    if (!d) throw new Error(`ENODEV ${ref}`);
    if (opts.alias !== undefined) d.alias = opts.alias;
    if (opts.mtu !== undefined) d.mtu = opts.mtu;
    if (opts.up !== undefined) d.up = opts.up;
  },
  async deleteLink(ref: string | number): Promise<void> {
    kernel.step();
    const d = kernel.find(ref);
    if (d) kernel.devices.delete(d.name);
  },
};

t.test('a kill at any step of creating a session tap leaves no persistent tap without its alias', async (t) => {
  const { SessionInterfaces } = t.mockRequire<typeof import('../../src/daemon/interfaces.js')>(
    '../../src/daemon/interfaces.js', { '../../src/native/index.js': { native: fakeNative }, 'node:fs': fakeFs });
  const sessions: Array<[string, SessionConfig]> = [
    ['named', normalizeSession({ tunnel_id: 1, session_id: 10, peer_session_id: 10, name: 'pw10' })],
    ['kernel-numbered', normalizeSession({ tunnel_id: 1, session_id: 11, peer_session_id: 11 })],
  ];
  for (const [label, s] of sessions) {
    // How many steps a complete set-up takes, then a kill after each of them.
    kernel = new Kernel();
    const ifaces = new SessionInterfaces(fakeRtnl as never, pino({ level: 'silent' }), false);
    const { links } = await ifaces.setup(s, 1446);
    const total = kernel.steps;
    t.equal(kernel.devices.get(links.ifname)?.alias, `l2tpd:1/${s.session_id}`, `${label}: the finished tap carries its alias`);
    t.ok(kernel.devices.get(links.ifname)?.persist, `${label}: and is persistent`);
    for (let k = 0; k < total; k++) {
      kernel = new Kernel();
      kernel.stepsLeft = k;
      const run = new SessionInterfaces(fakeRtnl as never, pino({ level: 'silent' }), false);
      const err = await run.setup(s, 1446).then(() => undefined, (e: unknown) => e);
      t.ok(err !== undefined && kernel.dead, `${label}: killed after ${k} steps`);
      kernel.exit();
      const orphans = [...kernel.devices.values()].filter((d) => d.persist && d.alias === undefined).map((d) => d.name);
      t.same(orphans, [], `${label}: killed after ${k} of ${total} steps: no persistent tap without an alias`);
    }
  }
});

t.test('releasing a session closes its tap on the pool, not on the event loop; delete removes it', async (t) => {
  const pooled = pooledCloses;
  pooled.length = 0;
  const loopClosed: number[] = [];
  const { SessionInterfaces } = t.mockRequire<typeof import('../../src/daemon/interfaces.js')>(
    '../../src/daemon/interfaces.js', {
      '../../src/native/index.js': { native: { ...fakeNative, close: (fd: number) => { loopClosed.push(fd); kernel.close(fd); } } },
      'node:fs': fakeFs,
    });
  kernel = new Kernel();
  const ifaces = new SessionInterfaces(fakeRtnl as never, pino({ level: 'silent' }), false);
  const kept = await ifaces.setup(normalizeSession({ tunnel_id: 1, session_id: 20, peer_session_id: 20, name: 'pw20' }), 1446);
  const gone = await ifaces.setup(normalizeSession({ tunnel_id: 1, session_id: 21, peer_session_id: 21, name: 'pw21' }), 1446);
  const stopping = ifaces.release(kept.links, false);
  t.same(pooled, [], 'release hands the close over and goes on');
  await stopping;
  t.same(pooled, [kept.links.tap.fd], 'stop: the tap fd closed on the pool');
  t.ok(kernel.devices.get('pw20')?.persist, 'and the tap stays, persistent, for the next start');
  await ifaces.release(gone.links, true);
  t.same(pooled, [kept.links.tap.fd, gone.links.tap.fd], 'delete: closed on the pool too');
  t.notOk(kernel.devices.has('pw21'), 'and the tap is gone with its last fd');
  t.same(loopClosed, [], 'no tap closed on the event loop');
});
