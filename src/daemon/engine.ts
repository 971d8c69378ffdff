/**
 * The daemon's engine: holds the desired state (the config file) and the running state
 * (sockets, taps, data-plane slots), and applies changes so that a refused request changes
 * nothing and an accepted one is running and persisted before the caller hears "done".
 */
import type { Logger } from 'pino';
import { readFileSync } from 'node:fs';
import type { Config, SessionConfig, TunnelConfig } from '../control/model.js';
import { ConfigError, ConflictError } from '../control/errors.js';
import {
  emptyConfig, normalizeSession, normalizeTunnel, validationSteps,
} from '../control/validate.js';
import { ConfigIndex, sessionKey } from '../control/conflicts.js';
import type { ConfigStore } from '../control/store.js';
import type { TxSeqStore } from '../control/tx-seq-store.js';
import { serialQueue, type Engine, type SessionView, type TunnelView } from '../control/api.js';
import { DataPlane, type SessionSpec } from '../dataplane/index.js';
import { MAX_SESSIONS, MAX_TUNNELS } from '../dataplane/layout.js';
import { HOST_ROW } from '../dataplane/counters.js';
import { ENCAPSULATIONS } from '../dataplane/encap.js';
import { native, socketOption, type IntSocketOption } from '../native/index.js';
import { Rtnl, type LinkEvent, type LinkInfo } from '../netlink/index.js';
import { defaultSessionMtu } from './mtu.js';
import { compileTunnel, type TunnelPlan } from '../control/tunnel-words.js';
import { compileSession, interfaceNames } from '../control/session-words.js';
import {
  knownLinks, LinkWatch, SessionInterfaces, type KnownLinks, type PortOverMtu, type SessionLinks,
} from './interfaces.js';
import type { MetricsSource } from '../metrics/index.js';
import { Liveness } from './liveness.js';
import { TxSequencing, type TxSession } from './tx-sequencing.js';

/** Backoff of retries of entries that could not start: from 1 s, doubling, at most a minute. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** After an address or link event, retry this soon (events come in bursts). */
const EVENT_RETRY_MS = 200;
/** Link events this long after a retry are taken as its own. */
const RETRY_QUIET_MS = 1000;
/** Bridges whose ports a check reads with a dump each; more than this, one dump of every link. */
const BRIDGE_DUMPS_MAX = 8;

/** Why an entry of the config is not running, and since when (ms since the epoch). */
interface Failure { error: string; since: number }

interface RunningTunnel {
  cfg: TunnelConfig;
  /** What its words compiled into: encapsulation, addresses, ports, socket options. */
  plan: TunnelPlan;
  slot: number;
  fd: number;
  /** Key of the socket when tunnels share it (IP encapsulation). */
  sharedKey?: string;
}

interface RunningSession {
  cfg: SessionConfig;
  slot: number;
  /** The tap (fd, name, ifindex) and the bridge / VLAN interface it is wired to. */
  links: SessionLinks;
  /** What the data plane was given (including the effective mtu), to hand it a new tap fd after a restore. */
  spec: SessionSpec;
  /** Times the interfaces were put back after being changed behind l2tpd's back. */
  restored: number;
  /** The session as its send numbering knows it (made once: the check runs every second). */
  tx: TxSession;
  /** Bridge ports over the session's MTU as last warned about (checkPortMtus). */
  portsOverMtu: PortOverMtu[];
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

export class DaemonEngine implements Engine, MetricsSource {
  /**
   * The desired state (the config file) as indexes, so that checks, changes and lookups cost the
   * same with ten thousand sessions as with ten.
   */
  private index = new ConfigIndex();
  /** The desired state as lists, sorted as the file is (the index's own arrays: read only). */
  private get config(): Config { return this.index.toConfig(); }
  private readonly tunnels = new Map<number, RunningTunnel>();
  private readonly sessions = new Map<string, RunningSession>();
  /** Sockets tunnels share (IP encapsulation: one per local address), by key. */
  private readonly sharedSockets = new Map<string, { fd: number; refs: number }>();
  private readonly tunnelSlots = new SlotPool(MAX_TUNNELS, 'tunnels');
  private readonly sessionSlots = new SlotPool(MAX_SESSIONS, 'sessions');
  /**
   * Entries of the config that could not be started (e.g. address not yet on the host): why, and
   * since when. They are retried on address and link events and on a timer with backoff.
   */
  private readonly failures = new Map<string, Failure>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt = 0;
  private retryDelayMs = RETRY_MIN_MS;
  /** Link events until this time are taken as the echo of our own retry, not as news. */
  private retryQuietUntil = 0;
  private unwatchAddresses: (() => void) | undefined;
  private readonly startedAt = Date.now();
  private readonly ifaces: SessionInterfaces;
  /** Which running session a link event concerns (kept as sessions start, stop and are repaired). */
  private readonly watch = new LinkWatch();
  /** Sessions whose interfaces link events touched, and bridges whose ports changed: the next repair pass's work. */
  private repairDue = new Set<string>();
  private mtuDue = new Set<string>();
  /** Up or down, and why, for every running tunnel and session; the taps' carrier follows it. */
  private readonly liveness: Liveness;
  private unwatch: (() => void) | undefined;
  /** Sending of sequence numbers: where each session's numbering resumes, the peer's S bit. */
  private readonly tx: TxSequencing;
  private txTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ConfigStore,
    readonly dataplane: DataPlane,
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
    opts: { offload?: boolean; txSeq?: TxSeqStore } = {},
  ) {
    this.ifaces = new SessionInterfaces(rtnl, log, opts.offload ?? true);
    this.liveness = new Liveness(dataplane, log, (fd, on) => native.tapSetCarrier(fd, on));
    this.tx = new TxSequencing(opts.txSeq, dataplane, log);
  }

  /** Load the config file and start everything in it; entries that fail are logged and kept. */
  async start(): Promise<void> {
    for (const name of this.store.removeStaleTemps()) this.log.info({ file: name }, 'removed a config temp file an interrupted write left');
    const loaded = this.store.load();
    this.index = ConfigIndex.of(loaded);
    this.tx.load(new Set(loaded.sessions.map((s) => sessionKey(s.tunnel_id, s.session_id))));
    await this.startMissing(loaded);
    await this.sweepInterfaces();
    await this.checkPortMtus();
    this.watchLinks();
    this.watchAddresses();
    this.scheduleRetry();
    this.tx.flush(this.txSessions());
    this.txTimer = setInterval(() => this.tx.check(this.txSessions()), 1000);
    this.txTimer.unref();
    this.log.info({ tunnels: this.tunnels.size, sessions: this.sessions.size, failed: this.failures.size }, 'configuration applied');
  }

  /**
   * Start what `cfg` has and is not running: tunnels, then sessions. Failures are recorded and
   * logged, not thrown. One link dump serves every session's tap re-attach.
   */
  private async startMissing(cfg: Config): Promise<void> {
    for (const t of cfg.tunnels) {
      if (this.tunnels.has(t.tunnel_id)) continue;
      try { await this.startTunnel(t); } catch (err) { this.recordFailure(`tunnel ${t.tunnel_id}`, err); }
    }
    const pending = cfg.sessions.filter((s) => !this.sessions.has(sessionKey(s.tunnel_id, s.session_id)));
    // Without a dump (it failed), each session takes its own.
    const dump = pending.length > 0 ? await this.rtnl.listLinks().catch(() => undefined) : undefined;
    const known = dump && knownLinks(dump);
    for (const s of pending) {
      const key = sessionKey(s.tunnel_id, s.session_id);
      if (!this.tunnels.has(s.tunnel_id)) { this.recordFailure(`session ${key}`, new Error('tunnel not running')); continue; }
      try { await this.startSession(s, known); } catch (err) { this.recordFailure(`session ${key}`, err); }
    }
  }

  private recordFailure(what: string, err: unknown): void {
    const msg = (err as Error).message;
    const prev = this.failures.get(what);
    this.failures.set(what, { error: msg, since: prev?.since ?? Date.now() });
    // A retry that fails the same way again is not news.
    if (prev?.error === msg) this.log.debug({ err: msg }, `${what} still not started`);
    else this.log.error({ err: msg }, `${what} not started`);
  }

  /**
   * Retry what could not start, after `delayMs` (default: the backoff). An earlier retry already
   * scheduled stands. Nothing to retry: nothing scheduled.
   */
  private scheduleRetry(delayMs = this.retryDelayMs): void {
    if (this.failures.size === 0 || this.stopping) return;
    const at = Date.now() + delayMs;
    if (this.retryTimer && this.retryAt <= at) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryAt = at;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.exclusive(() => this.retryFailed());
    }, delayMs);
  }

  private async retryFailed(): Promise<void> {
    if (this.failures.size === 0 || this.stopping) return;
    const before = this.failures.size;
    await this.startMissing(this.config);
    this.retryQuietUntil = Date.now() + RETRY_QUIET_MS;
    const started = before - this.failures.size;
    if (started > 0) {
      this.log.info({ started, still_down: this.failures.size }, 'entries that could not start are up now');
      this.retryDelayMs = RETRY_MIN_MS;
    } else {
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
    }
    this.scheduleRetry();
  }

  /** Shutdown: session taps and bridges are kept (persistent) so a restart does not flap them. */
  private stopping = false;

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    this.unwatch = undefined;
    this.unwatchAddresses?.();
    this.unwatchAddresses = undefined;
    if (this.repairTimer) clearTimeout(this.repairTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.txTimer) clearInterval(this.txTimer);
    await this.exclusive(async () => undefined);
    for (const s of [...this.sessions.values()]) await this.stopSession(s).catch(() => undefined);
    for (const t of [...this.tunnels.values()]) await this.stopTunnel(t).catch(() => undefined);
    this.liveness.stop();
    await this.dataplane.stop();
    // Every session is out of the data plane: its next number is exact.
    this.tx.flush([], true);
  }

  // ------------------------------------------------------------------ API

  async listTunnels(): Promise<TunnelView[]> {
    return this.config.tunnels.map((t) => this.tunnelView(t));
  }

  private tunnelView(t: TunnelConfig): TunnelView {
    const rt = this.tunnels.get(t.tunnel_id);
    const failure = this.failures.get(`tunnel ${t.tunnel_id}`);
    const live = rt ? this.liveness.tunnel(t.tunnel_id) : undefined;
    const hello = rt ? this.liveness.helloReport(t.tunnel_id) : undefined;
    return {
      ...t,
      ...liveFields(live, failure),
      ...(failure ? { error: failure.error } : {}),
      sessions: this.index.sessionCount(t.tunnel_id),
      ...(hello ? { hello } : {}),
      ...(rt ? { stats: this.dataplane.tunnelStats(rt.slot), diagnostics: this.liveness.tunnelDiagnostics(t.tunnel_id) } : {}),
    } as TunnelView;
  }

  /** API requests, SIGHUP reloads, retries and repairs, one at a time (Engine.exclusive), so check-then-apply is atomic. */
  readonly exclusive = serialQueue();

  async addTunnel(input: TunnelConfig): Promise<void> {
    const t = normalizeTunnel(input);
    this.index.checkAddTunnel(t);
    await this.startTunnel(t);
    await this.commit(() => this.index.addTunnel(t), () => this.index.delTunnel(t.tunnel_id), () => this.stopTunnel(this.tunnels.get(t.tunnel_id)!));
    this.log.info({ tunnel_id: t.tunnel_id }, 'tunnel added');
  }

  async delTunnel(id: number): Promise<void> {
    this.index.checkDelTunnel(id);
    const t = this.index.tunnels.get(id)!;
    await this.commit(() => this.index.delTunnel(id), () => this.index.addTunnel(t), async () => undefined);
    this.failures.delete(`tunnel ${id}`);
    const rt = this.tunnels.get(id);
    if (rt) await this.stopTunnel(rt);
    this.log.info({ tunnel_id: id }, 'tunnel deleted');
  }

  async listSessions(filter: { tunnel_id?: number; session_id?: number }, withStats: boolean): Promise<SessionView[]> {
    const { tunnel_id: tid, session_id: sid } = filter;
    const one = tid !== undefined && sid !== undefined ? this.index.session(tid, sid) : undefined;
    const list = one ? [one]
      : (tid !== undefined ? [...this.index.sessionsOf(tid)] : this.config.sessions).filter((s) => sid === undefined || s.session_id === sid);
    // Bridge ports as they are now, only for bridges a listed session runs in.
    const bridges = new Set<string>();
    for (const s of list) {
      const br = this.sessions.get(sessionKey(s.tunnel_id, s.session_id))?.links.bridge;
      if (br !== undefined) bridges.add(br);
    }
    const dump = bridges.size > 0 ? await this.bridgeLinks(bridges).catch((err: Error) => {
      // Shown without ports_over_mtu: say why, rather than let the field vanish unexplained.
      this.log.warn({ err: err.message }, 'cannot list bridge ports for show session');
      return undefined;
    }) : undefined;
    // In steps: views of ten thousand sessions take about 200 ms, which other readers need not wait for.
    return runPaced(mapInSteps(list, VIEW_STEP, (s) => this.sessionView(s, withStats, dump)));
  }

  private sessionView(s: SessionConfig, withStats: boolean, dump?: LinkInfo[]): SessionView {
    const rt = this.sessions.get(sessionKey(s.tunnel_id, s.session_id));
    const over = rt && dump ? SessionInterfaces.portsOverMtu(rt.links, rt.spec.mtu, dump) : [];
    const t = this.index.tunnels.get(s.tunnel_id);
    const failure = this.failures.get(`session ${sessionKey(s.tunnel_id, s.session_id)}`);
    const bridge = interfaceNames(s).bridge;
    return {
      ...s,
      peer_tunnel_id: t?.peer_tunnel_id,
      interface: rt?.links.ifname ?? s.name ?? '',
      ...(rt ? { ifindex: rt.links.ifindex } : {}),
      mtu: rt?.spec.mtu ?? s.mtu ?? 0,
      ...(bridge !== undefined ? { bridge } : {}),
      ...(over.length > 0 ? { ports_over_mtu: over } : {}),
      restored: rt?.restored ?? 0,
      ...liveFields(rt ? this.liveness.session(sessionKey(s.tunnel_id, s.session_id)) : undefined, failure),
      ...(failure ? { error: failure.error } : {}),
      // Numbering lives in the default sublayer; whether it is on now, the peer's S bit may have decided.
      ...(rt && rt.cfg.l2spec_type === 'default' ? { tx_seq: this.dataplane.txState(rt.slot).numbered ? 'on' : 'off' } : {}),
      ...(withStats && rt ? {
        stats: this.dataplane.sessionStats(rt.slot), diagnostics: this.liveness.sessionDiagnostics(sessionKey(s.tunnel_id, s.session_id)),
      } : {}),
    } as SessionView;
  }

  async addSession(input: SessionConfig): Promise<void> {
    const s = normalizeSession(input);
    this.index.checkAddSession(s);
    if (!this.tunnels.has(s.tunnel_id)) {
      throw new ConflictError(`tunnel ${s.tunnel_id} is configured but not running (${this.failures.get(`tunnel ${s.tunnel_id}`)?.error ?? 'unknown reason'})`, 409);
    }
    // No tap of a session the config does not name survives a sweep (start-up, reload), so
    // none is looked for.
    await this.startSession(s, { tapsOf: () => [] });
    const key = sessionKey(s.tunnel_id, s.session_id);
    await this.commit(() => this.index.addSession(s), () => this.index.delSession(s.tunnel_id, s.session_id), async () => {
      await this.stopSession(this.sessions.get(key)!, true);
      await this.sweepInterfaces();
    });
    const links = this.sessions.get(key)?.links;
    this.log.info({ tunnel_id: s.tunnel_id, session_id: s.session_id, interface: links?.ifname }, 'session added');
    // Only the new tap's bridge changed: a session outside any bridge needs no link dump.
    if (links?.bridge !== undefined) await this.checkPortMtus([links.bridge]);
  }

  async delSession(tid: number, sid: number): Promise<void> {
    this.index.checkDelSession(tid, sid);
    const s = this.index.session(tid, sid)!;
    await this.commit(() => this.index.delSession(tid, sid), () => this.index.addSession(s), async () => undefined);
    this.failures.delete(`session ${sessionKey(tid, sid)}`);
    const rt = this.sessions.get(sessionKey(tid, sid));
    if (rt) {
      // A stop that fails may leave its tap: a sweep finds it.
      await this.stopSession(rt, true).catch(async (err: unknown) => { await this.sweepInterfaces(); throw err; });
      // Its tap is gone with it; its bridge and VLAN interface go if no other session names them.
      const { bridge, vlanIf } = interfaceNames(s);
      await this.ifaces.removeUnused([vlanIf, bridge], (name) => this.index.isUsed(name));
    } else {
      // It never ran here (or no longer): whatever of it is left is found by a sweep.
      await this.sweepInterfaces();
    }
    this.log.info({ tunnel_id: tid, session_id: sid }, 'session deleted');
    // Only the removed tap's bridge changed.
    if (rt?.links.bridge !== undefined) await this.checkPortMtus([rt.links.bridge]);
  }

  /**
   * Re-read the config file and apply only the difference; a bad file changes nothing. A refused
   * file is logged here, whoever asked (SIGHUP, the API, ExecReload), and rethrown.
   */
  async reload(): Promise<{ added: number; removed: number; changed: number }> {
    const next = emptyConfig();
    let nextIndex: ConfigIndex;
    try {
      // Paced: readers (status, show, /metrics) are answered while ten thousand entries are checked.
      nextIndex = await runPaced(validationSteps(this.store.loadRaw('reload'), next));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'configuration reload refused; running state kept');
      throw err;
    }
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
        // A changed `seq` or `seq_mirror` says again how sending starts; otherwise it goes on as it was.
        if (n && (n.seq !== s.seq || n.seq_mirror !== s.seq_mirror)) this.tx.forgetNumbering(key);
        this.failures.delete(`session ${key}`);
        if (!n) removed++; else changed++;
      }
    }
    for (const id of oldT.keys()) {
      if (!newT.has(id) || changedTunnels.has(id)) {
        const rt = this.tunnels.get(id);
        if (rt) await this.stopTunnel(rt);
        this.failures.delete(`tunnel ${id}`);
        if (!newT.has(id)) removed++; else changed++;
      }
    }
    this.index = nextIndex;
    added += [...newT.keys()].filter((id) => !oldT.has(id)).length + [...newS.keys()].filter((key) => !oldS.has(key)).length;
    await this.startMissing(next);
    await this.sweepInterfaces();
    this.retryDelayMs = RETRY_MIN_MS;
    this.scheduleRetry();
    this.tx.flush(this.txSessions());
    await this.checkPortMtus();
    this.log.info({ added, removed, changed }, 'configuration reloaded');
    return { added, removed, changed };
  }

  // ------------------------------------------------------------------ metrics source

  get sessionCounters(): Float64Array { return this.dataplane.sessionCounters; }
  get tunnelCounters(): Float64Array { return this.dataplane.tunnelCounters; }
  readonly hostRow = HOST_ROW;

  metricSessions(): ReturnType<MetricsSource['metricSessions']> {
    const out = [];
    for (const s of this.sessions.values()) {
      const key = sessionKey(s.cfg.tunnel_id, s.cfg.session_id);
      const live = this.liveness.session(key);
      out.push({
        tunnel_id: s.cfg.tunnel_id, session_id: s.cfg.session_id, interface: s.links.ifname, slot: s.slot,
        up: live?.state === 'up' ? 1 : 0, transitions: live?.transitions ?? 0,
        mismatches: kindsOf(this.liveness.sessionDiagnostics(key)),
      });
    }
    return out;
  }

  metricTunnels(): ReturnType<MetricsSource['metricTunnels']> {
    return [...this.tunnels.values()].map((t) => {
      const id = t.cfg.tunnel_id;
      const live = this.liveness.tunnel(id);
      const rtt = this.liveness.rttMs(id);
      return {
        tunnel_id: id, slot: t.slot, up: live?.state === 'up' ? 1 : 0, transitions: live?.transitions ?? 0,
        ...(rtt !== undefined ? { rtt_ms: rtt } : {}),
        mismatches: kindsOf(this.liveness.tunnelDiagnostics(id)),
      };
    });
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
      failures: Object.fromEntries([...this.failures].map(([what, f]) => [what, f.error])),
    };
  }

  /**
   * Take a change into the desired state (`apply`, on the index) and write the file; if the
   * write fails, take it back (`revert`), undo the running change and rethrow.
   */
  private async commit(apply: () => void, revert: () => void, undo: () => Promise<void>): Promise<void> {
    apply();
    try {
      this.store.saveValid(this.config);
    } catch (err) {
      revert();
      // Undone before the next request runs (we hold the queue), so a retry finds things as they were.
      await undo().catch((e: Error) => this.log.error({ err: e.message }, 'cannot undo a change the config file did not take'));
      throw err;
    }
  }

  // ------------------------------------------------------------------ running state

  private async startTunnel(t: TunnelConfig): Promise<void> {
    const plan = compileTunnel(t);
    const { encap, family } = plan;
    await this.checkAddresses(t, family);
    const open = (): number => openOrExplain(() => encap.open(native, family, plan.local, plan.localPort, { options: plan.options }), t);
    const sharedKey = encap.sharedSocketKey(family, plan.local);
    let fd: number;
    const shared = sharedKey === undefined ? undefined : this.sharedSockets.get(sharedKey);
    if (shared) {
      shared.refs++;
      fd = shared.fd;
    } else {
      fd = open();
      if (sharedKey !== undefined) this.sharedSockets.set(sharedKey, { fd, refs: 1 });
    }
    const slot = this.tunnelSlots.take();
    this.dataplane.resetTunnel(slot);
    const rt: RunningTunnel = { cfg: t, plan, slot, fd, sharedKey };
    try {
      await this.dataplane.addTunnel({
        slot, tunnelId: t.tunnel_id, encap: encap.kind, family, fd, remote: plan.remote, remotePort: plan.remotePort,
        peerTunnelId: plan.peerTunnelId, helloIntervalMs: plan.helloIntervalMs, helloRetries: plan.helloRetries,
      });
    } catch (err) {
      this.releaseSocket(rt);
      this.tunnelSlots.give(slot);
      throw err;
    }
    this.tunnels.set(t.tunnel_id, rt);
    this.liveness.addTunnel({ ...t, hello_retries: plan.helloRetries }, slot);
    this.failures.delete(`tunnel ${t.tunnel_id}`);
  }

  /**
   * Refuse what only the host's routes reveal: a local or remote address that is a broadcast
   * address of one of its networks (the kernel would bind to it, and refuse to send to it).
   */
  private async checkAddresses(t: TunnelConfig, family: 4 | 6): Promise<void> {
    for (const field of ['local', 'remote'] as const) {
      const type = await this.rtnl.routeType(family, t[field]).catch(() => undefined);
      if (type === 'broadcast' || type === 'multicast') {
        throw new ConfigError(field, t[field], 'a unicast address',
          `${field} ${t[field]}: a ${type} address of this host's networks; expected a unicast address`);
      }
    }
  }

  private releaseSocket(rt: RunningTunnel): void {
    if (rt.sharedKey !== undefined) {
      const shared = this.sharedSockets.get(rt.sharedKey)!;
      if (--shared.refs > 0) return;
      this.sharedSockets.delete(rt.sharedKey);
    }
    native.close(rt.fd);
  }

  private async stopTunnel(rt: RunningTunnel): Promise<void> {
    this.tunnels.delete(rt.cfg.tunnel_id);
    this.liveness.delTunnel(rt.cfg.tunnel_id);
    await this.dataplane.delTunnel(rt.slot);
    this.releaseSocket(rt);
    this.tunnelSlots.give(rt.slot);
  }

  /** The kernel's default MTU for a session of `tunnel` whose header is `headerLength` bytes. */
  private defaultMtu(tunnel: RunningTunnel, headerLength: number): number {
    const { encap, family, remote } = tunnel.plan;
    let underlay = 1500;
    try { underlay = native.pathMtu(family, remote); } catch { /* no route yet: the kernel's 1500 fallback */ }
    return defaultSessionMtu(underlay, encap, family, headerLength);
  }

  /** `known`: what is known of the links there, to find a tap to re-attach (else a dump is taken). */
  private async startSession(s: SessionConfig, known?: KnownLinks): Promise<void> {
    const tunnel = this.tunnels.get(s.tunnel_id)!;
    // Compiled once: the header built here is the one the data plane writes, and what the MTU allows for.
    const compiled = compileSession(s, tunnel.plan.encap.wire);
    const mtu = s.mtu ?? this.defaultMtu(tunnel, compiled.tx.length);
    // Tap (persistent; re-attached after a restart), bridge and VLAN interface, all or nothing.
    const { links, undo } = await this.ifaces.setup(s, mtu, known);
    let slot: number | undefined;
    try {
      slot = this.sessionSlots.take();
      const spec: SessionSpec = {
        ...compiled, slot, tunnelSlot: tunnel.slot, sessionId: s.session_id, tapFd: links.tap.fd, tapOffload: links.tap.offload, mtu,
      };
      const key = sessionKey(s.tunnel_id, s.session_id);
      this.dataplane.resetSession(slot);
      const start = this.tx.startAt(key, spec);
      this.dataplane.seedTx(slot, start.nextSeq, start.numbered);
      await this.dataplane.addSession(spec);
      const rs: RunningSession = {
        cfg: s, slot, links, spec, restored: 0, portsOverMtu: [], tx: { key, tunnelId: s.tunnel_id, sessionId: s.session_id, slot },
      };
      this.sessions.set(key, rs);
      this.watch.set(key, links);
      this.liveness.addSession(s, key, slot, links.tap.fd, links.ifname);
      this.tx.started(rs.tx);
    } catch (err) {
      if (slot !== undefined) this.sessionSlots.give(slot);
      await undo();
      throw err;
    }
    this.failures.delete(`session ${sessionKey(s.tunnel_id, s.session_id)}`);
  }

  /** Stop a session; `remove` (del session) also deletes its tap, otherwise it stays for a restart. */
  private async stopSession(rs: RunningSession, remove = false): Promise<void> {
    this.sessions.delete(sessionKey(rs.cfg.tunnel_id, rs.cfg.session_id));
    this.watch.delete(sessionKey(rs.cfg.tunnel_id, rs.cfg.session_id));
    this.liveness.delSession(sessionKey(rs.cfg.tunnel_id, rs.cfg.session_id));
    let confirmed = false;
    try {
      await this.dataplane.delSession(rs.slot);
      confirmed = true;
    } finally {
      this.tx.stopped(rs.tx, remove, confirmed);
    }
    await this.ifaces.release(rs.links, remove, this.config.sessions);
    this.sessionSlots.give(rs.slot);
  }

  private txSessions(): TxSession[] {
    return [...this.sessions.values()].map((rs) => rs.tx);
  }

  /** Remove interfaces l2tpd marked that the config no longer names (see interfaces.ts). */
  private async sweepInterfaces(): Promise<void> {
    const running = new Set([...this.sessions.values()].map((r) => r.links.ifindex));
    try {
      await this.ifaces.sweep({ sessions: this.config.sessions, running });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot sweep leftover interfaces');
    }
  }

  /**
   * Warn (once per change) about bridge ports whose MTU is above their session's: the kernel
   * bridge drops their larger frames without a count anywhere (README "Session interfaces").
   * `bridges`: check only the sessions in these (the ones an add, delete or link event changed).
   */
  private async checkPortMtus(bridges?: Iterable<string>): Promise<void> {
    const only = bridges === undefined ? undefined : new Set(bridges);
    const bridged = only === undefined
      ? [...this.sessions.values()].filter((r) => r.links.bridge !== undefined)
      : [...only].flatMap((br) => [...this.watch.named(br)].map((key) => this.sessions.get(key)!).filter((r) => r.links.bridge === br));
    if (bridged.length === 0) return;
    let dump: LinkInfo[];
    try {
      dump = await this.bridgeLinks(only);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list bridge ports to check their MTUs');
      return;
    }
    for (const rs of bridged) {
      const over = SessionInterfaces.portsOverMtu(rs.links, rs.spec.mtu, dump);
      const same = over.length === rs.portsOverMtu.length && over.every((p, i) => p.interface === rs.portsOverMtu[i].interface && p.mtu === rs.portsOverMtu[i].mtu);
      rs.portsOverMtu = over;
      if (same || over.length === 0) continue;
      this.log.warn({
        tunnel_id: rs.cfg.tunnel_id, session_id: rs.cfg.session_id, interface: rs.links.ifname, bridge: rs.links.bridge,
        mtu: rs.spec.mtu, ports_over_mtu: over,
      }, `bridge ${rs.links.bridge} drops frames over ${rs.spec.mtu} bytes from ${over.map((p) => `${p.interface} (mtu ${p.mtu})`).join(', ')}: they never reach the session`);
    }
  }

  /**
   * The bridges `names` and their ports, for SessionInterfaces.portsOverMtu: a filtered dump per
   * bridge when there are few, one dump of every link otherwise (or when `names` is undefined).
   */
  private async bridgeLinks(names?: Set<string>): Promise<LinkInfo[]> {
    if (names === undefined || names.size > BRIDGE_DUMPS_MAX) return this.rtnl.listLinks();
    const out: LinkInfo[] = [];
    for (const name of names) {
      const br = await this.rtnl.linkByName(name);
      if (br) out.push(br, ...await this.rtnl.listLinks({ master: br.index }));
    }
    return out;
  }

  // ------------------------------------------------------------------ link events

  private repairTimer: NodeJS.Timeout | undefined;

  /** Watch RTNLGRP_LINK; changes to a session's tap, bridge or VLAN interface trigger a repair. */
  private watchLinks(): void {
    if (this.unwatch) return;
    try {
      this.unwatch = this.rtnl.onLinkEvent((ev) => this.onLinkEvent(ev), (err) => {
        // Events may have been lost (e.g. ENOBUFS): look at everything.
        this.log.warn({ err: err.message }, 'link monitor error; re-checking session interfaces');
        for (const key of this.sessions.keys()) this.repairDue.add(key);
        this.scheduleRepair();
        // A lost event may be the one a failed entry waits for.
        if (this.failures.size > 0) this.scheduleRetry(EVENT_RETRY_MS);
      });
      if (this.rtnl.monitorStatus()?.overrunSafe === false) {
        this.log.warn({}, 'cannot protect the link monitor against bursts of link events (NETLINK_NO_ENOBUFS): a burst larger than its buffer aborts l2tpd');
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot monitor links; session interfaces will not be restored');
    }
  }

  private onLinkEvent(ev: LinkEvent): void {
    const concerned = this.watch.concerned(ev.link);
    for (const key of concerned) this.repairDue.add(key);
    // A port of a session's bridge joined, left or changed its MTU.
    const bridge = this.watch.bridgeOf(ev.link);
    if (bridge !== undefined) this.mtuDue.add(bridge);
    if (concerned.size > 0 || bridge !== undefined) this.scheduleRepair();
    // A trunk, bridge or name a failed session waits for may have appeared or gone; events right
    // after a retry are that retry's own (set-up and undo of its interfaces).
    if (this.failures.size > 0 && Date.now() >= this.retryQuietUntil) this.scheduleRetry(EVENT_RETRY_MS);
  }

  /** Watch address changes: a tunnel whose local address was missing starts when it appears. */
  private watchAddresses(): void {
    if (this.unwatchAddresses) return;
    try {
      this.unwatchAddresses = this.rtnl.onAddressEvent((ev) => {
        if (ev.type === 'new' && this.failures.size > 0) this.scheduleRetry(EVENT_RETRY_MS);
      });
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot monitor addresses; entries that could not start are retried on a timer only');
    }
  }

  /** Debounced: a burst of events (including our own changes) gives one pass. */
  private scheduleRepair(): void {
    if (this.repairTimer) return;
    this.repairTimer = setTimeout(() => {
      this.repairTimer = undefined;
      void this.exclusive(() => this.repairDueSessions());
    }, 100);
  }

  /** Put back the interfaces of the sessions link events touched; check the bridges whose ports changed. */
  private async repairDueSessions(): Promise<void> {
    const due = this.repairDue;
    const bridges = this.mtuDue;
    this.repairDue = new Set();
    this.mtuDue = new Set();
    let any = false;
    for (const key of due) {
      const rs = this.sessions.get(key);
      if (!rs) continue;
      try {
        const repairs = await this.ifaces.repair(rs.cfg, rs.links, rs.spec.mtu);
        for (const r of repairs) {
          if (r.newTap) {
            // The data plane still polls the old fd: switch it to the new tap.
            await this.dataplane.delSession(rs.slot);
            const old = rs.links.tap.fd;
            rs.links.tap = r.newTap;
            rs.spec = { ...rs.spec, tapFd: r.newTap.fd, tapOffload: r.newTap.offload };
            await this.dataplane.addSession(rs.spec);
            this.liveness.setTap(key, r.newTap.fd);
            try { native.close(old); } catch { /* already closed */ }
          }
          this.log.warn({ tunnel_id: rs.cfg.tunnel_id, session_id: rs.cfg.session_id, interface: rs.links.ifname }, `restored: ${r.what}`);
        }
        if (repairs.length > 0) { rs.restored++; any = true; }
      } catch (err) {
        this.log.error({ tunnel_id: rs.cfg.tunnel_id, session_id: rs.cfg.session_id, err: (err as Error).message }, 'cannot restore session interfaces');
      }
      // A repair may have given it a new tap (ifindex) or found its bridge re-created.
      this.watch.set(key, rs.links);
      if (rs.links.bridge !== undefined) bridges.add(rs.links.bridge);
    }
    if (any) await this.sweepInterfaces();
    if (bridges.size > 0) await this.checkPortMtus(bridges);
  }
}

/**
 * Turn socket set-up errors into messages that name the word, the value and what is allowed.
 * `unprivilegedPort`: the lowest port binding needs no capability for (read from the kernel).
 */
export function explainSocketError(err: unknown, t: TunnelConfig, unprivilegedPort = unprivilegedPortStart()): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRNOTAVAIL') return new ConfigError('local', t.local, 'an address configured on this host');
  if (code === 'EADDRINUSE') return new ConfigError('udp_sport', t.udp_sport, `a UDP port not already in use on ${t.local}`);
  if ((code === 'EACCES' || code === 'EPERM') && t.encap === 'udp' && t.udp_sport! < unprivilegedPort) {
    return new ConfigError('udp_sport', t.udp_sport, `a port of ${unprivilegedPort} or above, or CAP_NET_BIND_SERVICE for l2tpd`,
      `udp_sport ${t.udp_sport}: binding a port below ${unprivilegedPort} needs CAP_NET_BIND_SERVICE, which l2tpd does not have; use a port of ${unprivilegedPort} or above, or grant it the capability`);
  }
  if (code === 'EPERM' || code === 'EACCES') {
    const need = t.encap === 'ip' ? 'raw IP sockets need CAP_NET_RAW' : 'refused by the kernel or a security policy';
    return new ConflictError(`cannot open a ${t.encap} socket on ${t.local}: ${code} (${need})`, 500);
  }
  return err;
}

/** net.ipv4.ip_unprivileged_port_start of this namespace (it covers IPv6 too); 1024 if unreadable. */
function unprivilegedPortStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()) || 1024;
  } catch {
    return 1024;
  }
}

function openOrExplain(open: () => number, t: TunnelConfig): number {
  try {
    return open();
  } catch (err) {
    throw explainSocketError(err, t);
  }
}

/**
 * state, reason and since for a view: the liveness verdict of a running entry; for one that
 * could not start, down since it failed (the error is in `error`).
 */
function liveFields(live: { state: string; reason: string; since: number } | undefined,
  failure: { error: string; since: number } | undefined): Record<string, string> {
  if (live) return { state: live.state, reason: live.reason, since: new Date(live.since).toISOString() };
  return { state: 'down', ...(failure ? { since: new Date(failure.since).toISOString() } : {}) };
}

/** The kinds of mismatch among `diagnostics`, each once; most sessions have none, and share one empty list. */
const NO_MISMATCHES: readonly string[] = Object.freeze([]);
const kindsOf = (diagnostics: readonly { kind: string }[]): readonly string[] =>
  (diagnostics.length === 0 ? NO_MISMATCHES : [...new Set(diagnostics.map((d) => d.kind))]);

/** Session views listSessions builds between two turns of the event loop (about 4 ms of work). */
const VIEW_STEP = 200;

/** `items.map(fn)`, pausing after every `step` items. */
function* mapInSteps<T, R>(items: readonly T[], step: number, fn: (item: T) => R): Generator<void, R[], void> {
  const out: R[] = [];
  for (const item of items) {
    out.push(fn(item));
    if (out.length % step === 0) yield;
  }
  return out;
}

/** Run `steps` to its end, giving the event loop a turn between two steps. */
async function runPaced<R>(steps: Generator<void, R, void>): Promise<R> {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
