/**
 * The configuration as indexes, so that every conflict check and every change costs the same
 * with ten thousand sessions as with ten: a tunnel by id, a session by (tunnel, session), the
 * sessions of each tunnel, the UDP ports taken, the tunnels sharing each socket, the host-wide
 * session ids of IP encapsulation, and which session owns or refers to each interface name. validate.ts checks a whole file with
 * it; the daemon keeps one as its desired state.
 */
import { ConflictError } from './errors.js';
import type { Config, SessionConfig, TunnelConfig } from './model.js';
import { ENCAPSULATIONS } from '../dataplane/encap.js';
import { interfaceNames } from './session-words.js';
import { socketWordConflict } from './tunnel-words.js';
import { familyOf } from './vocabulary.js';

/** How a session is keyed: `<tunnel_id>/<session_id>`. */
export const sessionKey = (tid: number, sid: number): string => `${tid}/${sid}`;

/** Interfaces a session refers to but does not own (bridge, trunk, VLAN sub-interface). */
export function usedNames(s: SessionConfig): string[] {
  const n = interfaceNames(s);
  return [n.bridge, n.trunk, n.vlanIf].filter((x): x is string => x !== undefined);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Ordering of the config file: tunnels by id, sessions by (tunnel_id, session_id). */
const byTunnel = (a: TunnelConfig, b: TunnelConfig): number => a.tunnel_id - b.tunnel_id;
const bySession = (a: SessionConfig, b: SessionConfig): number => a.tunnel_id - b.tunnel_id || a.session_id - b.session_id;

/** The first position in sorted `list` whose entry does not sort before `x` (binary search). */
function lowerBound<T>(list: T[], x: T, cmp: (a: T, b: T) => number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(list[mid], x) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** Insert into a sorted array (the move is a memmove). */
function insertSorted<T>(list: T[], x: T, cmp: (a: T, b: T) => number): void {
  list.splice(lowerBound(list, x, cmp), 0, x);
}

function removeSorted<T>(list: T[], x: T, cmp: (a: T, b: T) => number): void {
  const at = lowerBound(list, x, cmp);
  if (list[at] === x) list.splice(at, 1);
}

/** Add `value` to the set under `key` (made when missing). */
export function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) { set = new Set(); map.set(key, set); }
  set.add(value);
}

/** Remove `value` from the set under `key`, and the set once empty. */
export function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

export class ConfigIndex {
  readonly tunnels = new Map<number, TunnelConfig>();
  readonly sessions = new Map<string, SessionConfig>();
  /** Session keys of each tunnel (for counting and deleting them). */
  private readonly ofTunnel = new Map<number, Set<string>>();
  /** `encap|local|port` of tunnels that bind a socket of their own → tunnel id. */
  private readonly ports = new Map<string, number>();
  /** The encapsulation's shared-socket key (as the engine opens it) → tunnels on that socket. */
  private readonly socketSharers = new Map<string, Set<number>>();
  /** `encap|session_id` of encapsulations whose session ids are unique on the host → session key. */
  private readonly hostIds = new Map<string, string>();
  /** Fixed interface names → the session they belong to. */
  private readonly owners = new Map<string, string>();
  /** Bridge, trunk and VLAN interface names → sessions referring to them. */
  private readonly users = new Map<string, Set<string>>();
  /** The entries in file order, kept sorted as they change. */
  private readonly sortedTunnels: TunnelConfig[] = [];
  private readonly sortedSessions: SessionConfig[] = [];

  static of(cfg: Config): ConfigIndex {
    const index = new ConfigIndex();
    for (const t of cfg.tunnels) index.addTunnel(t);
    for (const s of cfg.sessions) index.addSession(s);
    return index;
  }

  /** The config as lists, in file order (the arrays are the index's own: do not change them). */
  toConfig(): Config {
    return { tunnels: this.sortedTunnels, sessions: this.sortedSessions };
  }

  session(tid: number, sid: number): SessionConfig | undefined {
    return this.sessions.get(sessionKey(tid, sid));
  }

  /** The sessions of a tunnel in file order (by session_id): a run of the sorted list. */
  *sessionsOf(tid: number): IterableIterator<SessionConfig> {
    const list = this.sortedSessions;
    for (let at = lowerBound(list, { tunnel_id: tid, session_id: 0 } as SessionConfig, bySession); at < list.length && list[at].tunnel_id === tid; at++) {
      yield list[at];
    }
  }

  sessionCount(tid: number): number {
    return this.ofTunnel.get(tid)?.size ?? 0;
  }

  /** Whether a configured session refers to `name` as its bridge, trunk or VLAN interface. */
  isUsed(name: string): boolean {
    return this.users.has(name);
  }

  private portKey(t: TunnelConfig): string | undefined {
    return ENCAPSULATIONS[t.encap].socketPerTunnel ? `${t.encap}|${t.local}|${t.udp_sport}` : undefined;
  }

  private sharedSocketKey(t: TunnelConfig): string | undefined {
    return ENCAPSULATIONS[t.encap].sharedSocketKey(familyOf(t.local), t.local);
  }

  private hostIdKey(s: SessionConfig): string | undefined {
    const encap = this.tunnels.get(s.tunnel_id)?.encap;
    return encap !== undefined && ENCAPSULATIONS[encap].sessionIdsPerHost ? `${encap}|${s.session_id}` : undefined;
  }

  checkAddTunnel(t: TunnelConfig): void {
    if (this.tunnels.has(t.tunnel_id)) {
      throw new ConflictError(`tunnel ${t.tunnel_id} already exists`, 409, 'tunnel_id', t.tunnel_id);
    }
    const port = this.portKey(t);
    const other = port === undefined ? undefined : this.ports.get(port);
    if (other !== undefined) {
      // Each such tunnel binds its own socket to local:udp_sport.
      throw new ConflictError(`local ${t.local} udp_sport ${t.udp_sport} is already used by tunnel ${other}`, 409, 'udp_sport', t.udp_sport);
    }
    const shared = this.sharedSocketKey(t);
    const sharerId = shared === undefined ? undefined : this.socketSharers.get(shared)?.values().next().value;
    if (sharerId !== undefined) {
      // The engine opens a shared socket with the first tunnel's options; the others must agree
      // (they all do with each other, so one of them stands for all).
      const sharer = this.tunnels.get(sharerId)!;
      const word = socketWordConflict(t, sharer);
      if (word !== undefined) {
        const mine = (t as unknown as Record<string, unknown>)[word];
        const theirs = (sharer as unknown as Record<string, unknown>)[word];
        throw new ConflictError(
          `${word} ${String(mine ?? 'unset')}: tunnel ${sharer.tunnel_id} shares the encap ${t.encap} socket on ${t.local} `
            + `and has ${word} ${String(theirs ?? 'unset')}; tunnels on one local address must agree on it`,
          409, word, mine);
      }
    }
  }

  checkAddSession(s: SessionConfig): void {
    const tunnel = this.tunnels.get(s.tunnel_id);
    if (!tunnel) throw new ConflictError(`tunnel ${s.tunnel_id} does not exist`, 404, 'tunnel_id', s.tunnel_id);
    if (this.sessions.has(sessionKey(s.tunnel_id, s.session_id))) {
      throw new ConflictError(`session ${s.session_id} already exists in tunnel ${s.tunnel_id}`, 409, 'session_id', s.session_id);
    }
    const hostId = this.hostIdKey(s);
    const sameId = hostId === undefined ? undefined : this.hostIds.get(hostId);
    if (sameId !== undefined) {
      throw new ConflictError(
        `session_id ${s.session_id} is already used in tunnel ${this.sessions.get(sameId)!.tunnel_id}; with encap ${tunnel.encap}, session IDs must be unique on the host`,
        409, 'session_id', s.session_id);
    }
    const mine = interfaceNames(s).own;
    if (mine !== undefined) {
      const owner = this.owners.get(mine);
      if (owner !== undefined) {
        const x = this.sessions.get(owner)!;
        throw new ConflictError(`interface name ${mine} is already used by session ${x.session_id} in tunnel ${x.tunnel_id}`, 409, 'name', mine);
      }
      const user = this.users.get(mine)?.values().next().value;
      if (user !== undefined) {
        const x = this.sessions.get(user)!;
        throw new ConflictError(`interface name ${mine} is already used as a bridge or trunk by session ${x.session_id} in tunnel ${x.tunnel_id}`, 409, 'name', mine);
      }
    }
    for (const name of usedNames(s)) {
      const owner = this.owners.get(name);
      if (owner === undefined) continue;
      const x = this.sessions.get(owner)!;
      throw new ConflictError(`${name} is the interface of session ${x.session_id} in tunnel ${x.tunnel_id}; it cannot be a bridge or trunk`, 409,
        s.bridge === name ? 'bridge' : 'dev', name);
    }
  }

  checkDelTunnel(tid: number): void {
    if (!this.tunnels.has(tid)) throw new ConflictError(`tunnel ${tid} does not exist`, 404, 'tunnel_id', tid);
    const n = this.sessionCount(tid);
    if (n > 0) throw new ConflictError(`tunnel ${tid} still has ${plural(n, 'session')}; delete them first`, 409, 'tunnel_id', tid);
  }

  checkDelSession(tid: number, sid: number): void {
    if (!this.tunnels.has(tid)) throw new ConflictError(`tunnel ${tid} does not exist`, 404, 'tunnel_id', tid);
    if (!this.sessions.has(sessionKey(tid, sid))) {
      throw new ConflictError(`session ${sid} does not exist in tunnel ${tid}`, 404, 'session_id', sid);
    }
  }

  /** Add a tunnel that checkAddTunnel accepted. */
  addTunnel(t: TunnelConfig): void {
    this.tunnels.set(t.tunnel_id, t);
    this.ofTunnel.set(t.tunnel_id, new Set());
    const port = this.portKey(t);
    if (port !== undefined) this.ports.set(port, t.tunnel_id);
    const shared = this.sharedSocketKey(t);
    if (shared !== undefined) addTo(this.socketSharers, shared, t.tunnel_id);
    insertSorted(this.sortedTunnels, t, byTunnel);
  }

  /** Add a session that checkAddSession accepted. */
  addSession(s: SessionConfig): void {
    const key = sessionKey(s.tunnel_id, s.session_id);
    this.sessions.set(key, s);
    this.ofTunnel.get(s.tunnel_id)!.add(key);
    const hostId = this.hostIdKey(s);
    if (hostId !== undefined) this.hostIds.set(hostId, key);
    const mine = interfaceNames(s).own;
    if (mine !== undefined) this.owners.set(mine, key);
    for (const name of usedNames(s)) addTo(this.users, name, key);
    insertSorted(this.sortedSessions, s, bySession);
  }

  delTunnel(tid: number): void {
    const t = this.tunnels.get(tid);
    if (!t) return;
    for (const s of [...this.sessionsOf(tid)]) this.delSession(s.tunnel_id, s.session_id);
    const port = this.portKey(t);
    if (port !== undefined) this.ports.delete(port);
    const shared = this.sharedSocketKey(t);
    if (shared !== undefined) removeFrom(this.socketSharers, shared, tid);
    this.tunnels.delete(tid);
    this.ofTunnel.delete(tid);
    removeSorted(this.sortedTunnels, t, byTunnel);
  }

  delSession(tid: number, sid: number): void {
    const key = sessionKey(tid, sid);
    const s = this.sessions.get(key);
    if (!s) return;
    const hostId = this.hostIdKey(s);
    if (hostId !== undefined && this.hostIds.get(hostId) === key) this.hostIds.delete(hostId);
    const mine = interfaceNames(s).own;
    if (mine !== undefined && this.owners.get(mine) === key) this.owners.delete(mine);
    for (const name of usedNames(s)) removeFrom(this.users, name, key);
    this.ofTunnel.get(tid)?.delete(key);
    this.sessions.delete(key);
    removeSorted(this.sortedSessions, s, bySession);
  }
}
