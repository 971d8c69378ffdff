/**
 * An in-memory Engine for the control API and l2tpctl tests, with the daemon's refusals
 * (checkAdd* / checkDel* from validate.ts) over a plain Config.
 */
import { serialQueue, type Engine, type SessionView, type TunnelView } from '../../src/control/api.js';
import type { Config, SessionConfig, TunnelConfig } from '../../src/control/model.js';
import { checkAddSession, checkAddTunnel, checkDelSession, checkDelTunnel } from '../../src/control/validate.js';

export interface FakeEngineOptions {
  /**
   * Views carry what the daemon adds at run time: tunnel `state` and `sessions`, session
   * `peer_tunnel_id`. Off, views are the bare config (what an older daemon sent), so l2tpctl must
   * fill in the peer tunnel itself and `show tunnel` prints only the config lines. Default on.
   */
  runtimeFields?: boolean;
  /** Session counters reported when stats are asked for. */
  stats?: Record<string, number>;
  /** What reload() reports. */
  reloadResult?: Record<string, number>;
}

export class FakeEngine implements Engine {
  readonly exclusive = serialQueue();
  cfg: Config = { tunnels: [], sessions: [] };
  /** Bodies given to addTunnel/addSession, refused ones included. */
  bodies: unknown[] = [];
  /** Names of the engine calls, in order. */
  calls: string[] = [];
  /** Engine calls running now, and the most ever at once. */
  active = 0;
  maxActive = 0;
  /** Delay every call by this long (to overlap requests). */
  delayMs = 0;
  /** Delay calls of these names by this long instead (a slow mutation next to quick reads). */
  delays: Record<string, number> = {};
  /** The next call throws this. */
  failNext?: Error;

  private readonly runtimeFields: boolean;
  private readonly stats: Record<string, number>;
  private readonly reloadResult: Record<string, number>;

  constructor(opts: FakeEngineOptions = {}) {
    this.runtimeFields = opts.runtimeFields ?? true;
    this.stats = opts.stats ?? { rx_packets: 1, rx_bytes: 100, tx_packets: 2, tx_bytes: 200 };
    this.reloadResult = opts.reloadResult ?? { added: 0, removed: 0, changed: 0 };
  }

  private async enter<R>(name: string, fn: () => R): Promise<R> {
    this.calls.push(name);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const delay = this.delays[name] ?? this.delayMs;
      if (delay) await new Promise((r) => setTimeout(r, delay));
      if (this.failNext) {
        const e = this.failNext;
        this.failNext = undefined;
        throw e;
      }
      return fn();
    } finally {
      this.active--;
    }
  }

  listTunnels(): Promise<TunnelView[]> {
    return this.enter('listTunnels', () => this.cfg.tunnels.map((x) => (this.runtimeFields
      ? { ...x, state: 'up', sessions: this.cfg.sessions.filter((s) => s.tunnel_id === x.tunnel_id).length }
      : { ...x })));
  }
  addTunnel(x: TunnelConfig): Promise<void> {
    this.bodies.push(x);
    return this.enter('addTunnel', () => { checkAddTunnel(this.cfg, x); this.cfg.tunnels.push(x); });
  }
  delTunnel(id: number): Promise<void> {
    return this.enter('delTunnel', () => {
      checkDelTunnel(this.cfg, id);
      this.cfg.tunnels = this.cfg.tunnels.filter((x) => x.tunnel_id !== id);
    });
  }
  listSessions(f: { tunnel_id?: number; session_id?: number }, withStats: boolean): Promise<SessionView[]> {
    return this.enter('listSessions', () => this.cfg.sessions
      .filter((s) => (f.tunnel_id === undefined || s.tunnel_id === f.tunnel_id) && (f.session_id === undefined || s.session_id === f.session_id))
      .map((s, i) => ({
        ...s,
        interface: s.name ?? `l2tpeth${i}`,
        mtu: s.mtu ?? 1446,
        ...(this.runtimeFields ? { peer_tunnel_id: this.cfg.tunnels.find((x) => x.tunnel_id === s.tunnel_id)?.peer_tunnel_id } : {}),
        ...(withStats ? { stats: { ...this.stats } } : {}),
      })));
  }
  addSession(s: SessionConfig): Promise<SessionView> {
    this.bodies.push(s);
    return this.enter('addSession', () => {
      checkAddSession(this.cfg, s);
      this.cfg.sessions.push(s);
      return { ...s, interface: s.name ?? 'l2tpeth0', mtu: 1446 };
    });
  }
  delSession(tid: number, sid: number): Promise<void> {
    return this.enter('delSession', () => {
      checkDelSession(this.cfg, tid, sid);
      this.cfg.sessions = this.cfg.sessions.filter((s) => !(s.tunnel_id === tid && s.session_id === sid));
    });
  }
  reload(): Promise<Record<string, number>> {
    return this.enter('reload', () => ({ ...this.reloadResult }));
  }
  status(): Promise<Record<string, unknown>> {
    return this.enter('status', () => ({ tunnels: this.cfg.tunnels.length, sessions: this.cfg.sessions.length }));
  }
}
