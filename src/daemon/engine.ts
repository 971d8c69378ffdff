/**
 * The daemon's engine: holds the desired state (the config file) and the running state
 * (sockets, taps, data-plane slots), and applies changes so that a refused request changes
 * nothing and an accepted one is running and persisted before the caller hears "done".
 */
import type { Logger } from 'pino';
import { isIP } from 'node:net';
import type { Config, SessionConfig, TunnelConfig } from '../control/model.js';
import { ConfigError, ConflictError } from '../control/errors.js';
import {
  checkAddSession, checkAddTunnel, checkDelSession, checkDelTunnel, normalizeSession, normalizeTunnel,
  validateConfig,
} from '../control/validate.js';
import type { ConfigStore } from '../control/store.js';
import type { Engine, SessionView, TunnelView } from '../control/api.js';
import { DataPlane } from '../dataplane/index.js';
import { HOST_ROW, MAX_SESSIONS, MAX_TUNNELS } from '../dataplane/layout.js';
import { native } from '../native/index.js';
import { Rtnl } from '../netlink/index.js';
import { sessionOverhead } from './mtu.js';
import type { MetricsSource } from '../metrics/index.js';

const IPPROTO_L2TP = 115;

interface RunningTunnel {
  cfg: TunnelConfig;
  slot: number;
  family: 4 | 6;
  fd: number;
  /** Key of the shared raw socket for IP encapsulation. */
  rawKey?: string;
}

interface RunningSession {
  cfg: SessionConfig;
  slot: number;
  tapFd: number;
  ifname: string;
  mtu: number;
}

class SlotPool {
  private readonly free: number[] = [];
  private next = 0;
  constructor(private readonly max: number, private readonly what: string) {}
  take(): number {
    const s = this.free.pop();
    if (s !== undefined) return s;
    if (this.next >= this.max) throw new ConflictError(`too many ${this.what} (at most ${this.max})`, 409);
    return this.next++;
  }
  give(slot: number): void { this.free.push(slot); }
}

const sessionKey = (tid: number, sid: number) => `${tid}/${sid}`;

export class DaemonEngine implements Engine, MetricsSource {
  private config: Config = { tunnels: [], sessions: [] };
  private readonly tunnels = new Map<number, RunningTunnel>();
  private readonly sessions = new Map<string, RunningSession>();
  private readonly rawSockets = new Map<string, { fd: number; refs: number }>();
  private readonly tunnelSlots = new SlotPool(MAX_TUNNELS, 'tunnels');
  private readonly sessionSlots = new SlotPool(MAX_SESSIONS, 'sessions');
  /** Entries of the config that could not be started (e.g. address not yet on the host). */
  private readonly failures = new Map<string, string>();
  private readonly startedAt = Date.now();

  constructor(
    private readonly store: ConfigStore,
    readonly dataplane: DataPlane,
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
  ) {}

  /** Load the config file and start everything in it; entries that fail are logged and kept. */
  async start(): Promise<void> {
    this.config = this.store.load();
    for (const t of this.config.tunnels) {
      try { await this.startTunnel(t); } catch (err) { this.recordFailure(`tunnel ${t.tunnel_id}`, err); }
    }
    for (const s of this.config.sessions) {
      if (!this.tunnels.has(s.tunnel_id)) { this.recordFailure(`session ${s.tunnel_id}/${s.session_id}`, new Error('tunnel not running')); continue; }
      try { await this.startSession(s); } catch (err) { this.recordFailure(`session ${s.tunnel_id}/${s.session_id}`, err); }
    }
    this.log.info({ tunnels: this.tunnels.size, sessions: this.sessions.size, failed: this.failures.size }, 'configuration applied');
  }

  private recordFailure(what: string, err: unknown): void {
    const msg = (err as Error).message;
    this.failures.set(what, msg);
    this.log.error({ err: msg }, `${what} not started`);
  }

  async stop(): Promise<void> {
    for (const s of [...this.sessions.values()]) await this.stopSession(s).catch(() => undefined);
    for (const t of [...this.tunnels.values()]) await this.stopTunnel(t).catch(() => undefined);
    await this.dataplane.stop();
  }

  // ------------------------------------------------------------------ API

  async listTunnels(): Promise<TunnelView[]> {
    return this.config.tunnels.map((t) => this.tunnelView(t));
  }

  private tunnelView(t: TunnelConfig): TunnelView {
    const rt = this.tunnels.get(t.tunnel_id);
    const failure = this.failures.get(`tunnel ${t.tunnel_id}`);
    return {
      ...t,
      state: rt ? 'up' : 'down',
      ...(failure ? { error: failure } : {}),
      sessions: this.config.sessions.filter((s) => s.tunnel_id === t.tunnel_id).length,
      ...(rt ? { stats: this.dataplane.tunnelStats(rt.slot) } : {}),
    } as TunnelView;
  }

  /** Run mutations one at a time (API requests and SIGHUP alike), so check-then-apply is atomic. */
  private chain: Promise<unknown> = Promise.resolve();
  private exclusive<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  addTunnel(input: TunnelConfig): Promise<void> { return this.exclusive(() => this.doAddTunnel(input)); }
  delTunnel(id: number): Promise<void> { return this.exclusive(() => this.doDelTunnel(id)); }
  addSession(input: SessionConfig): Promise<void> { return this.exclusive(() => this.doAddSession(input)); }
  delSession(tid: number, sid: number): Promise<void> { return this.exclusive(() => this.doDelSession(tid, sid)); }
  reload(): Promise<{ added: number; removed: number; changed: number }> { return this.exclusive(() => this.doReload()); }
  reloadSerialized = () => this.reload();

  private async doAddTunnel(input: TunnelConfig): Promise<void> {
    const t = normalizeTunnel(input);
    checkAddTunnel(this.config, t);
    await this.startTunnel(t);
    this.commit({ ...this.config, tunnels: [...this.config.tunnels, t] }, () => this.stopTunnel(this.tunnels.get(t.tunnel_id)!));
    this.log.info({ tunnel_id: t.tunnel_id }, 'tunnel added');
  }

  private async doDelTunnel(id: number): Promise<void> {
    checkDelTunnel(this.config, id);
    const next = { ...this.config, tunnels: this.config.tunnels.filter((t) => t.tunnel_id !== id) };
    this.store.save(next);
    this.config = next;
    this.failures.delete(`tunnel ${id}`);
    const rt = this.tunnels.get(id);
    if (rt) await this.stopTunnel(rt);
    this.log.info({ tunnel_id: id }, 'tunnel deleted');
  }

  async listSessions(filter: { tunnel_id?: number; session_id?: number }, withStats: boolean): Promise<SessionView[]> {
    return this.config.sessions
      .filter((s) => (filter.tunnel_id === undefined || s.tunnel_id === filter.tunnel_id)
        && (filter.session_id === undefined || s.session_id === filter.session_id))
      .map((s) => this.sessionView(s, withStats));
  }

  private sessionView(s: SessionConfig, withStats: boolean): SessionView {
    const rt = this.sessions.get(sessionKey(s.tunnel_id, s.session_id));
    const t = this.config.tunnels.find((x) => x.tunnel_id === s.tunnel_id);
    const failure = this.failures.get(`session ${s.tunnel_id}/${s.session_id}`);
    return {
      ...s,
      peer_tunnel_id: t?.peer_tunnel_id,
      interface: rt?.ifname ?? s.name ?? '',
      mtu: rt?.mtu ?? s.mtu ?? 0,
      state: rt ? 'up' : 'down',
      ...(failure ? { error: failure } : {}),
      ...(withStats && rt ? { stats: this.dataplane.sessionStats(rt.slot) } : {}),
    } as SessionView;
  }

  private async doAddSession(input: SessionConfig): Promise<void> {
    const s = normalizeSession(input);
    checkAddSession(this.config, s);
    if (!this.tunnels.has(s.tunnel_id)) {
      throw new ConflictError(`tunnel ${s.tunnel_id} is configured but not running (${this.failures.get(`tunnel ${s.tunnel_id}`) ?? 'unknown reason'})`, 409);
    }
    await this.startSession(s);
    const key = sessionKey(s.tunnel_id, s.session_id);
    this.commit({ ...this.config, sessions: [...this.config.sessions, s] }, () => this.stopSession(this.sessions.get(key)!));
    this.log.info({ tunnel_id: s.tunnel_id, session_id: s.session_id, interface: this.sessions.get(key)?.ifname }, 'session added');
  }

  private async doDelSession(tid: number, sid: number): Promise<void> {
    checkDelSession(this.config, tid, sid);
    const next = { ...this.config, sessions: this.config.sessions.filter((s) => !(s.tunnel_id === tid && s.session_id === sid)) };
    this.store.save(next);
    this.config = next;
    this.failures.delete(`session ${tid}/${sid}`);
    const rt = this.sessions.get(sessionKey(tid, sid));
    if (rt) await this.stopSession(rt);
    this.log.info({ tunnel_id: tid, session_id: sid }, 'session deleted');
  }

  /** Re-read the config file and apply only the difference; a bad file changes nothing. */
  private async doReload(): Promise<{ added: number; removed: number; changed: number }> {
    const next = validateConfig(this.store.loadRaw());
    const same = (a: object, b: object) => JSON.stringify(a) === JSON.stringify(b);
    const oldT = new Map(this.config.tunnels.map((t) => [t.tunnel_id, t]));
    const newT = new Map(next.tunnels.map((t) => [t.tunnel_id, t]));
    const oldS = new Map(this.config.sessions.map((s) => [sessionKey(s.tunnel_id, s.session_id), s]));
    const newS = new Map(next.sessions.map((s) => [sessionKey(s.tunnel_id, s.session_id), s]));
    const changedTunnels = new Set([...newT.keys()].filter((id) => oldT.has(id) && !same(oldT.get(id)!, newT.get(id)!)));
    let added = 0; let removed = 0; let changed = 0;
    // Stop sessions that are gone, changed, or whose tunnel changed.
    for (const [key, s] of oldS) {
      const n = newS.get(key);
      if (!n || !same(n, s) || changedTunnels.has(s.tunnel_id)) {
        const rt = this.sessions.get(key);
        if (rt) await this.stopSession(rt);
        this.failures.delete(`session ${key}`);
        if (!n) removed++; else changed++;
      }
    }
    for (const [id, t] of oldT) {
      if (!newT.has(id) || changedTunnels.has(id)) {
        const rt = this.tunnels.get(id);
        if (rt) await this.stopTunnel(rt);
        this.failures.delete(`tunnel ${id}`);
        if (!newT.has(id)) removed++; else changed++;
        void t;
      }
    }
    this.config = next;
    for (const [id, t] of newT) {
      if (this.tunnels.has(id)) continue;
      if (!oldT.has(id)) added++;
      try { await this.startTunnel(t); } catch (err) { this.recordFailure(`tunnel ${id}`, err); }
    }
    for (const [key, s] of newS) {
      if (this.sessions.has(key)) continue;
      if (!oldS.has(key)) added++;
      if (!this.tunnels.has(s.tunnel_id)) { this.recordFailure(`session ${key}`, new Error('tunnel not running')); continue; }
      try { await this.startSession(s); } catch (err) { this.recordFailure(`session ${key}`, err); }
    }
    this.log.info({ added, removed, changed }, 'configuration reloaded');
    return { added, removed, changed };
  }

  // ------------------------------------------------------------------ metrics source

  get sessionCounters(): Float64Array { return this.dataplane.sessionCounters; }
  get tunnelCounters(): Float64Array { return this.dataplane.tunnelCounters; }
  readonly hostRow = HOST_ROW;

  metricSessions(): Array<{ tunnel_id: number; session_id: number; interface: string; slot: number }> {
    const out = [];
    for (const s of this.sessions.values()) {
      out.push({ tunnel_id: s.cfg.tunnel_id, session_id: s.cfg.session_id, interface: s.ifname, slot: s.slot });
    }
    return out;
  }

  metricTunnels(): Array<{ tunnel_id: number; slot: number }> {
    return [...this.tunnels.values()].map((t) => ({ tunnel_id: t.cfg.tunnel_id, slot: t.slot }));
  }

  async status(): Promise<Record<string, unknown>> {
    return {
      pid: process.pid,
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      tunnels: this.config.tunnels.length,
      sessions: this.config.sessions.length,
      running_tunnels: this.tunnels.size,
      running_sessions: this.sessions.size,
      config: this.store.path,
      failures: Object.fromEntries(this.failures),
    };
  }

  /** Persist `next`; if the write fails, undo the running change and rethrow. */
  private commit(next: Config, undo: () => Promise<void>): void {
    try {
      this.store.save(next);
    } catch (err) {
      void undo();
      throw err;
    }
    this.config = next;
  }

  // ------------------------------------------------------------------ running state

  private async startTunnel(t: TunnelConfig): Promise<void> {
    const family = isIP(t.local) === 6 ? 6 : 4;
    let fd: number;
    let rawKey: string | undefined;
    if (t.encap === 'udp') {
      fd = openOrExplain(() => native.udpOpen(family, t.local, t.udp_sport!, {
        noCheckTx: family === 4 && t.udp_csum !== 'on',
        noCheck6Tx: family === 6 && t.udp6_csum_tx === 'off',
        noCheck6Rx: family === 6 && t.udp6_csum_rx === 'off',
      }), t);
    } else {
      rawKey = `${family}|${t.local}`;
      const shared = this.rawSockets.get(rawKey);
      if (shared) {
        shared.refs++;
        fd = shared.fd;
      } else {
        fd = openOrExplain(() => native.rawOpen(family, t.local, IPPROTO_L2TP, {}), t);
        this.rawSockets.set(rawKey, { fd, refs: 1 });
      }
    }
    const slot = this.tunnelSlots.take();
    this.dataplane.resetTunnel(slot);
    const rt: RunningTunnel = { cfg: t, slot, family, fd, rawKey };
    try {
      await this.dataplane.addTunnel({
        slot, tunnelId: t.tunnel_id, encap: t.encap, family, fd, remote: t.remote,
        remotePort: t.encap === 'udp' ? t.udp_dport! : 0,
      });
    } catch (err) {
      this.releaseSocket(rt);
      this.tunnelSlots.give(slot);
      throw err;
    }
    this.tunnels.set(t.tunnel_id, rt);
    this.failures.delete(`tunnel ${t.tunnel_id}`);
  }

  private releaseSocket(rt: RunningTunnel): void {
    if (rt.rawKey) {
      const shared = this.rawSockets.get(rt.rawKey)!;
      if (--shared.refs > 0) return;
      this.rawSockets.delete(rt.rawKey);
    }
    native.close(rt.fd);
  }

  private async stopTunnel(rt: RunningTunnel): Promise<void> {
    this.tunnels.delete(rt.cfg.tunnel_id);
    await this.dataplane.delTunnel(rt.slot);
    this.releaseSocket(rt);
    this.tunnelSlots.give(rt.slot);
  }

  private defaultMtu(t: TunnelConfig, s: SessionConfig, family: 4 | 6): number {
    let underlay = 1500;
    try { underlay = native.pathMtu(family, t.remote); } catch { /* no route yet: the kernel's 1500 fallback */ }
    return Math.max(68, underlay - sessionOverhead(t, s, family));
  }

  private async startSession(s: SessionConfig): Promise<void> {
    const tunnel = this.tunnels.get(s.tunnel_id)!;
    const t = tunnel.cfg;
    const mtu = s.mtu ?? this.defaultMtu(t, s, tunnel.family);
    let tap;
    try {
      tap = native.tapOpen(s.name ?? 'l2tpeth%d', false);
    } catch (err) {
      throw new ConfigError('name', s.name ?? 'l2tpeth%d', `an interface name l2tpd can create (${(err as Error).message})`);
    }
    const slot = this.sessionSlots.take();
    const rs: RunningSession = { cfg: s, slot, tapFd: tap.fd, ifname: tap.name, mtu };
    try {
      await this.rtnl.setLink(tap.name, { mtu, up: true });
      if (s.bridge) await this.attachBridge(tap.name, s.bridge, mtu);
      this.dataplane.resetSession(slot);
      await this.dataplane.addSession({
        slot, tunnelSlot: tunnel.slot, sessionId: s.session_id, peerSessionId: s.peer_session_id,
        tapFd: tap.fd, cookie: hexBytes(s.cookie), peerCookie: hexBytes(s.peer_cookie),
        l2spec: s.l2spec_type ?? 'default', seq: s.seq ?? 'none', reorderTimeout: s.reorder_timeout ?? 0,
        offset: s.offset ?? 0, peerOffset: s.peer_offset ?? 0, mtu,
      });
    } catch (err) {
      native.close(tap.fd);
      this.sessionSlots.give(slot);
      throw err;
    }
    this.sessions.set(sessionKey(s.tunnel_id, s.session_id), rs);
    this.failures.delete(`session ${s.tunnel_id}/${s.session_id}`);
  }

  private async attachBridge(ifname: string, bridge: string, mtu: number): Promise<void> {
    let br = await this.rtnl.linkByName(bridge);
    if (!br) br = await this.rtnl.createBridge(bridge, { mtu, alias: 'l2tpd' });
    await this.rtnl.setLink(ifname, { master: br.index });
  }

  private async stopSession(rs: RunningSession): Promise<void> {
    this.sessions.delete(sessionKey(rs.cfg.tunnel_id, rs.cfg.session_id));
    await this.dataplane.delSession(rs.slot);
    native.close(rs.tapFd);
    this.sessionSlots.give(rs.slot);
  }
}

function hexBytes(hex: string | undefined): number[] {
  if (!hex) return [];
  const out: number[] = [];
  for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
  return out;
}

/** Turn socket set-up errors into messages that name the word, the value and what is allowed. */
function openOrExplain(open: () => number, t: TunnelConfig): number {
  try {
    return open();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRNOTAVAIL') throw new ConfigError('local', t.local, 'an address configured on this host');
    if (code === 'EADDRINUSE') throw new ConfigError('udp_sport', t.udp_sport, `a UDP port not already in use on ${t.local}`);
    if (code === 'EPERM' || code === 'EACCES') throw new ConflictError(`cannot open a ${t.encap} socket on ${t.local}: ${code} (needs CAP_NET_RAW/CAP_NET_ADMIN)`, 500);
    throw err;
  }
}
