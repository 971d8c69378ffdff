/**
 * Session interfaces over rtnetlink: the tap of each session, the bridge it joins and, with
 * `vlan ID dev TRUNK`, the VLAN interface TRUNK.ID in that bridge (README "Session interfaces";
 * ownership: docs/architecture.md "The control plane").
 *
 * Ownership. Everything l2tpd creates carries an interface alias (IFLA_IFALIAS):
 *  - a session tap:              `l2tpd:<tunnel_id>/<session_id>`
 *  - a bridge or VLAN interface: `l2tpd` (shared by every session naming it)
 * l2tpd only ever deletes interfaces carrying one of these marks; pre-existing bridges and VLAN
 * interfaces are used as they are (never brought up, resized, moved or deleted). A pre-existing
 * `TRUNK.ID` must be what the name says — a VLAN interface with that ID on that trunk — or the
 * session is refused. When l2tpd enslaves a pre-existing VLAN interface to the session's bridge,
 * the session tap's alias says so (`l2tpd:<tunnel_id>/<session_id> enslaved <ifname>`): the
 * kernel keeps that note across daemon restarts, and the last session using the interface
 * releases it again, so it is left as it was found.
 *
 * Lifecycle policy:
 *  - `del session` (and a reload that drops the session): the tap's persist flag is cleared so
 *    it disappears; a bridge / VLAN interface l2tpd created goes when no configured session
 *    names it any more (ports someone else added to such a bridge are released, not deleted).
 *  - SIGTERM/SIGINT: nothing is removed. Taps are persistent, so they keep their ifindex and
 *    bridge membership; the restarted daemon re-attaches to them and traffic resumes without
 *    the bridge seeing a port go away.
 *  - start-up and reload: marked interfaces the config no longer names are removed (sweep).
 *
 * Names for re-attachment. A session with `name` uses that name. A session without one gets
 * `l2tpeth%d` from the kernel the first time, like `ip l2tp`; the tap's alias records which
 * session it belongs to, so a restarted daemon finds it by alias and keeps the same name and
 * ifindex. No state file is needed: the kernel holds the state. After a reboot the kernel picks
 * a fresh l2tpethN, as it would for a kernel session.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { SessionConfig } from '../control/model.js';
import { ConfigError, ConflictError } from '../control/errors.js';
import { interfaceNames } from '../control/session-words.js';
import { addTo, removeFrom, sessionKey } from '../control/conflicts.js';
import { GSO_MAX_SEGS } from '../dataplane/layout.js';
import { native, type TapHandle } from '../native/index.js';
import { NetlinkError, type LinkInfo, type Rtnl } from '../netlink/index.js';

export const SHARED_ALIAS = 'l2tpd';
/** A session tap's alias; `enslaved`: the pre-existing VLAN interface l2tpd put in its bridge. */
export const sessionAlias = (tid: number, sid: number, enslaved?: string): string =>
  `l2tpd:${sessionKey(tid, sid)}${enslaved !== undefined ? ` enslaved ${enslaved}` : ''}`;

export interface SessionAlias { tunnel_id: number; session_id: number; enslaved?: string }

/** Parse a session tap's alias; undefined for anything else. */
export function parseSessionAlias(alias: string | undefined): SessionAlias | undefined {
  const m = alias === undefined ? null : /^l2tpd:(\d+)\/(\d+)(?: enslaved (\S+))?$/.exec(alias);
  if (!m) return undefined;
  return { tunnel_id: Number(m[1]), session_id: Number(m[2]), ...(m[3] !== undefined ? { enslaved: m[3] } : {}) };
}

/** Does a link carry the tap mark of this session? */
function isTapOf(l: LinkInfo, s: Pick<SessionConfig, 'tunnel_id' | 'session_id'>): boolean {
  const a = parseSessionAlias(l.alias);
  return a !== undefined && a.tunnel_id === s.tunnel_id && a.session_id === s.session_id;
}

/**
 * What setting up a session needs to know of the links already there: the taps l2tpd marked as
 * that session's (to re-attach one), and names. A batch of sessions (start-up, reload, retry)
 * reads it from one dump (knownLinks); a new session needs none (no tap of a session the config
 * does not name survives a sweep). Either way no session costs a dump of every link.
 */
export interface KnownLinks {
  tapsOf(s: Pick<SessionConfig, 'tunnel_id' | 'session_id'>): LinkInfo[];
  /** Every link by name, when read from a dump (else a name is looked up when needed). */
  byName?(ifname: string): LinkInfo | undefined;
}

/** KnownLinks from one dump of this namespace's links, indexed once. */
export function knownLinks(dump: LinkInfo[]): KnownLinks {
  const taps = new Map<string, LinkInfo[]>();
  const names = new Map<string, LinkInfo>();
  for (const l of dump) {
    names.set(l.name, l);
    const a = parseSessionAlias(l.alias);
    if (!a) continue;
    const key = sessionKey(a.tunnel_id, a.session_id);
    const mine = taps.get(key);
    if (mine) mine.push(l); else taps.set(key, [l]);
  }
  return {
    tapsOf: (s) => taps.get(sessionKey(s.tunnel_id, s.session_id)) ?? [],
    byName: (ifname) => names.get(ifname),
  };
}

/**
 * Which running sessions a link event concerns, by the ifindex and name of their taps and the
 * names of their bridges and VLAN interfaces, and which session bridge a link is a port of. Kept
 * up to date as sessions start, stop and are repaired, so that an event costs a few lookups
 * however many sessions run.
 */
export class LinkWatch {
  private readonly byIndex = new Map<number, Set<string>>();
  private readonly byName = new Map<string, Set<string>>();
  /** ifindex of a session bridge → its name, with the sessions in it. */
  private readonly bridges = new Map<number, { name: string; keys: Set<string> }>();
  private readonly entries = new Map<string, { index: number; names: string[]; bridgeIndex?: number }>();

  /** Watch session `key` with these links (replacing what was watched for it). */
  set(key: string, links: SessionLinks): void {
    this.delete(key);
    const names = [links.ifname, links.bridge, links.vlanIf].filter((n): n is string => n !== undefined);
    const entry = { index: links.ifindex, names, bridgeIndex: links.bridge !== undefined ? links.bridgeIndex : undefined };
    this.entries.set(key, entry);
    addTo(this.byIndex, entry.index, key);
    for (const n of names) addTo(this.byName, n, key);
    if (entry.bridgeIndex !== undefined) {
      const br = this.bridges.get(entry.bridgeIndex) ?? { name: links.bridge!, keys: new Set<string>() };
      br.keys.add(key);
      this.bridges.set(entry.bridgeIndex, br);
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    removeFrom(this.byIndex, entry.index, key);
    for (const n of entry.names) removeFrom(this.byName, n, key);
    if (entry.bridgeIndex !== undefined) {
      const br = this.bridges.get(entry.bridgeIndex);
      br?.keys.delete(key);
      if (br?.keys.size === 0) this.bridges.delete(entry.bridgeIndex);
    }
  }

  /** Sessions whose tap (by ifindex or name), bridge or VLAN interface `link` is. */
  concerned(link: Pick<LinkInfo, 'index' | 'name'>): Set<string> {
    const out = new Set(this.byIndex.get(link.index));
    for (const key of this.byName.get(link.name) ?? []) out.add(key);
    return out;
  }

  /** Sessions that name `ifname` as their tap, bridge or VLAN interface. */
  named(ifname: string): ReadonlySet<string> {
    return this.byName.get(ifname) ?? new Set();
  }

  /** The name of the session bridge `link` is a port of, or is. */
  bridgeOf(link: Pick<LinkInfo, 'index' | 'master'>): string | undefined {
    return (link.master !== undefined ? this.bridges.get(link.master)?.name : undefined) ?? this.bridges.get(link.index)?.name;
  }
}

/**
 * Why an existing interface named `TRUNK.ID` cannot carry `vlan ID dev TRUNK`, or undefined
 * when it can: it must be a VLAN interface (kind vlan) with that VLAN ID whose lower device is
 * the trunk in this namespace. `lower`: the link its IFLA_LINK names, when in this namespace.
 */
export function vlanMismatch(
  s: Pick<SessionConfig, 'vlan' | 'dev'>, link: LinkInfo, trunk: LinkInfo | undefined, lower: LinkInfo | undefined,
): ConfigError | undefined {
  const head = `vlan ${s.vlan} dev ${s.dev}: ${link.name} exists and`;
  const allowed = `VLAN ${s.vlan} on ${s.dev} (or no interface named ${link.name})`;
  if (link.kind !== 'vlan') {
    return new ConfigError('vlan', s.vlan, allowed, `${head} is ${link.kind ? `a ${link.kind}` : 'not a VLAN interface'}, not VLAN ${s.vlan} on ${s.dev}`);
  }
  if (link.vlanId !== s.vlan) {
    return new ConfigError('vlan', s.vlan, allowed, `${head} carries VLAN ${link.vlanId ?? '(unknown)'}, not ${s.vlan}`);
  }
  if (trunk === undefined || link.linkNetnsid !== undefined || link.link !== trunk.index) {
    const on = link.linkNetnsid !== undefined ? 'a device in another network namespace'
      : lower?.name ?? (link.link !== undefined ? `ifindex ${link.link}` : 'an unknown device');
    return new ConfigError('dev', s.dev, `the trunk ${link.name} is on (or no interface named ${link.name})`,
      `${head} is VLAN ${s.vlan} on ${on}, not on ${s.dev}`);
  }
  return undefined;
}

/** A port of a session's bridge (or the bridge itself) whose MTU is above the session's. */
export interface PortOverMtu { interface: string; mtu: number }

/** What a running session holds: the open tap and the interfaces it is wired to. */
export interface SessionLinks {
  tap: TapHandle;
  ifindex: number;
  /** The name the tap must keep (config `name`, or the kernel-picked l2tpethN). */
  ifname: string;
  bridge?: string;
  vlanIf?: string;
  /** ifindex of the bridge, for link events of its ports. */
  bridgeIndex?: number;
  /** The pre-existing VLAN interface l2tpd put in the bridge (noted in the tap's alias). */
  enslavedVlan?: string;
}

/** A change made to restore the intended state, for logs and the `restored` counter. */
export interface Repair {
  what: string;
  /** Set when the tap was recreated: the data plane must switch to this fd. */
  newTap?: TapHandle;
}

type Undo = () => Promise<void> | void;

/** Interfaces a sweep names one by one in the log; the rest are counted in one line. */
const SWEEP_LOG_LINES_MAX = 20;

export class SessionInterfaces {
  /** `offload`: open taps with IFF_VNET_HDR + TSO where the kernel allows (l2tpd --offload). */
  constructor(private readonly rtnl: Rtnl, private readonly log: Logger, private readonly offload = true) {}

  /**
   * Create or re-attach everything a session needs, all or nothing: on failure every interface
   * this call created is removed again and the error names the config word. Returns the links
   * and an undo for the caller to run if a later step (the data plane) fails.
   */
  async setup(s: SessionConfig, mtu: number, known?: KnownLinks): Promise<{ links: SessionLinks; undo: () => Promise<void> }> {
    const undos: Undo[] = [];
    const undo = async (): Promise<void> => {
      for (const u of undos.reverse()) await Promise.resolve().then(u).catch(() => undefined);
      undos.length = 0;
    };
    try {
      const names = interfaceNames(s);
      const bridgeName = names.bridge;
      let vlanLink: LinkInfo | undefined;
      if (s.vlan !== undefined) vlanLink = (await this.ensureVlan(s, mtu, undos)).link;
      let br: LinkInfo | undefined;
      if (bridgeName !== undefined) br = (await this.ensureBridge(bridgeName, mtu, undos)).link;
      let enslavedVlan: string | undefined;
      if (vlanLink && br && vlanLink.master !== br.index) {
        if (vlanLink.master !== undefined && vlanLink.alias !== SHARED_ALIAS) {
          const other = await this.rtnl.linkByIndex(vlanLink.master);
          throw new ConflictError(`vlan ${s.vlan} dev ${s.dev}: ${vlanLink.name} is already a port of ${other?.name ?? `#${vlanLink.master}`}, not of bridge ${br.name}`, 409, 'vlan', s.vlan);
        }
        const prev = vlanLink.master;
        await this.rtnl.setLink(vlanLink.index, { master: br.index });
        const idx = vlanLink.index;
        undos.push(() => this.rtnl.setLink(idx, { master: prev ?? null }));
        if (vlanLink.alias !== SHARED_ALIAS) enslavedVlan = vlanLink.name;
      } else if (vlanLink && br && vlanLink.alias !== SHARED_ALIAS) {
        // Already in the bridge: l2tpd's doing if a session tap in it says so (before a restart,
        // or another session's, running or not).
        const ports = await this.rtnl.listLinks({ master: br.index });
        if (ports.some((l) => parseSessionAlias(l.alias)?.enslaved === vlanLink.name)) enslavedVlan = vlanLink.name;
      }
      const { tap, link } = await this.openTap(s, mtu, undos, known, enslavedVlan);
      if (br && link.master !== br.index) await this.rtnl.setLink(link.index, { master: br.index });
      const links: SessionLinks = {
        tap, ifindex: link.index, ifname: tap.name, bridge: bridgeName, vlanIf: names.vlanIf,
        ...(br ? { bridgeIndex: br.index } : {}),
        ...(enslavedVlan !== undefined ? { enslavedVlan } : {}),
      };
      return { links, undo };
    } catch (err) {
      await undo();
      throw explain(s, err);
    }
  }

  /**
   * The session's tap: re-attached if l2tpd left it persistent, created otherwise. `known`: where
   * to look for the session's marked taps; without it, a dump is taken.
   */
  private async openTap(s: SessionConfig, mtu: number, undos: Undo[], known?: KnownLinks, enslavedVlan?: string): Promise<{ tap: TapHandle; link: LinkInfo }> {
    const alias = sessionAlias(s.tunnel_id, s.session_id, enslavedVlan);
    const names = interfaceNames(s);
    const explicit = names.own;
    const links = known ?? knownLinks(await this.rtnl.listLinks());
    const mine = links.tapsOf(s);
    let name = names.tap;
    // Re-attach (keep the device) when ours already exists: by its fixed name, or as found by
    // alias. `prev`: the tap as the dump showed it.
    let prev: LinkInfo | undefined;
    if (explicit) {
      // Ours under another name (config renamed while we were down): stale, remove it.
      for (const l of mine.filter((x) => x.name !== explicit)) await this.rtnl.deleteLink(l.index).catch(() => undefined);
      const existing = links.byName ? links.byName(explicit) : await this.rtnl.linkByName(explicit);
      if (existing && !isTapOf(existing, s)) {
        throw new ConflictError(`name ${explicit}: interface ${explicit} already exists and was not created by l2tpd for session ${s.session_id} in tunnel ${s.tunnel_id}`, 409, 'name', explicit);
      }
      prev = existing;
    } else {
      prev = mine.find((l) => l.kind === 'tun');
      if (prev) name = prev.name;
    }
    // A new tap stays non-persistent until it carries its ownership alias: if l2tpd dies before
    // that, the kernel removes it with the fd, so no persistent tap ever lacks the mark a sweep
    // needs to find it. (A re-attached tap is persistent already and keeps its alias.)
    let tap: TapHandle;
    try {
      tap = native.tapOpen(name, false, this.offload);
    } catch (err) {
      throw new ConfigError('name', names.tap, `an interface name l2tpd can create (${(err as Error).message})`);
    }
    // Re-attached only if the tap opened is the one found (a batch's dump can be seconds old);
    // `found`: its state now, so that only what differs is changed (a restart with ten thousand
    // sessions then costs one request per tap).
    let found: LinkInfo | undefined;
    if (prev) {
      const now = await this.rtnl.linkByName(tap.name).catch(() => undefined);
      if (now && now.index === prev.index) {
        found = now;
      } else if (now && now.alias !== undefined && !isTapOf(now, s)) {
        await closeOffLoop(tap.fd);
        throw new ConflictError(`name ${tap.name}: interface ${tap.name} was created by someone else meanwhile`, 409, 'name', tap.name);
      }
    }
    const reattach = found !== undefined;
    undos.push(reattach ? () => closeOffLoop(tap.fd) : () => dropTap(tap));
    if (this.offload && !tap.offload) this.log.warn({ interface: tap.name }, 'the kernel refused tap offload (IFF_VNET_HDR + TSO): plain tap');
    if (tap.offload && found?.gsoMaxSegs !== GSO_MAX_SEGS) {
      try {
        await this.rtnl.setLink(tap.name, { gsoMaxSegs: GSO_MAX_SEGS });
      } catch (err) {
        // Without the cap a super-frame could need more slots than one read offers.
        this.log.warn({ interface: tap.name, err: (err as Error).message }, 'cannot cap gso_max_segs: tap offload off');
        await closeOffLoop(tap.fd);
        tap = native.tapOpen(tap.name, false, false);
      }
    }
    if (!(found && found.alias === alias && found.mtu === mtu && found.up)) await this.rtnl.setLink(tap.name, { alias, mtu, up: true });
    if (!reattach) native.tapSetPersist(tap.fd, true);
    const link = found ? { ...found, alias, mtu, up: true } : await this.rtnl.linkByName(tap.name);
    if (!link) throw new NetlinkError(`open tap ${tap.name}`, 'ENODEV', 19, 'vanished right after creation');
    if (reattach) this.log.info({ interface: tap.name, ifindex: link.index }, 're-attached to persistent session interface');
    return { tap, link };
  }

  /** The bridge `name`, created (undo pushed) when missing. */
  private async ensureBridge(name: string, mtu: number, undos: Undo[]): Promise<{ link: LinkInfo; created: boolean }> {
    const br = await this.rtnl.linkByName(name);
    if (br) {
      if (br.kind !== 'bridge') throw new ConfigError('bridge', name, `a bridge (${name} is ${br.kind ? `a ${br.kind}` : 'not a bridge'})`);
      return { link: br, created: false };
    }
    const link = await this.rtnl.createBridge(name, { mtu, alias: SHARED_ALIAS });
    undos.push(() => this.rtnl.deleteLink(link.index));
    this.log.info({ bridge: name, mtu }, 'bridge created');
    return { link, created: true };
  }

  /**
   * The session's VLAN interface on its trunk, created (undo pushed) when missing. One that
   * exists is used only if it is that VLAN on that trunk (vlanMismatch).
   */
  private async ensureVlan(s: SessionConfig, mtu: number, undos: Undo[]): Promise<{ link: LinkInfo; created: boolean }> {
    const name = interfaceNames(s).vlanIf!;
    const existing = await this.rtnl.linkByName(name);
    const trunk = await this.rtnl.linkByName(s.dev!);
    if (existing) {
      const lower = existing.link !== undefined && existing.linkNetnsid === undefined ? await this.rtnl.linkByIndex(existing.link) : undefined;
      const wrong = vlanMismatch(s, existing, trunk, lower);
      if (wrong) throw wrong;
      return { link: existing, created: false };
    }
    if (!trunk) throw new ConfigError('dev', s.dev, `an existing trunk interface (no interface ${s.dev} on this host)`);
    const link = await this.rtnl.createVlan(s.dev!, s.vlan!, name, { alias: SHARED_ALIAS, up: true, mtu: Math.min(mtu, trunk.mtu) });
    undos.push(() => this.rtnl.deleteLink(link.index));
    this.log.info({ interface: name, vlan: s.vlan, dev: s.dev }, 'VLAN interface created');
    return { link, created: true };
  }

  /**
   * Stop using a session's tap. `remove`: clear its persist flag so the kernel deletes it
   * (del session), and give back a pre-existing VLAN interface l2tpd enslaved unless one of
   * `keep` (the sessions still configured) uses it; otherwise the tap stays, with its bridge
   * membership, for the next start.
   */
  async release(links: SessionLinks, remove: boolean, keep: SessionConfig[] = []): Promise<void> {
    if (!remove) { await closeOffLoop(links.tap.fd); return; }
    const l = await this.rtnl.linkByIndex(links.ifindex).catch(() => undefined);
    if (links.enslavedVlan !== undefined && l?.master !== undefined) await this.giveBack(links.enslavedVlan, l.master, keep);
    await dropTap(links.tap);
    // If the fd was no longer attached, the persist flag could not be cleared: delete by mark.
    if (l && parseSessionAlias(l.alias)) await this.rtnl.deleteLink(l.index).catch(() => undefined);
  }

  /**
   * Take the pre-existing VLAN interface `name` out of the bridge `bridgeIndex` that l2tpd put
   * it in, unless a session of `keep` still uses it or it is no longer there.
   */
  private async giveBack(name: string, bridgeIndex: number, keep: SessionConfig[]): Promise<void> {
    if (keep.some((k) => interfaceNames(k).vlanIf === name)) return;
    try {
      const v = await this.rtnl.linkByName(name);
      if (!v || v.alias === SHARED_ALIAS || v.master !== bridgeIndex) return;
      await this.rtnl.setLink(v.index, { master: null });
      this.log.info({ interface: name }, 'released pre-existing VLAN interface from the bridge l2tpd had put it in');
    } catch (err) {
      this.log.warn({ interface: name, err: (err as Error).message }, 'cannot release pre-existing VLAN interface from its bridge');
    }
  }

  /**
   * Remove the bridges and VLAN interfaces l2tpd created among `names` (VLAN interfaces first)
   * that no configured session names any more (`isUsed`): what a sweep would remove after one
   * session went, without a dump of every link.
   */
  async removeUnused(names: Array<string | undefined>, isUsed: (ifname: string) => boolean): Promise<void> {
    for (const name of names) {
      if (name === undefined || isUsed(name)) continue;
      try {
        const l = await this.rtnl.linkByName(name);
        if (!l || l.alias !== SHARED_ALIAS) continue;
        await this.rtnl.deleteLink(l.index);
        this.log.info({ interface: name, alias: l.alias }, 'removed interface l2tpd created and the config no longer names');
      } catch (err) {
        if (!(err instanceof NetlinkError && err.code === 'ENODEV')) this.log.warn({ interface: name, err: (err as Error).message }, 'cannot remove leftover interface');
      }
    }
  }

  /**
   * Remove interfaces marked by l2tpd that `keep` does not name: session taps whose session is
   * gone, bridges and VLAN interfaces no configured session refers to. Returns what was removed.
   */
  async sweep(keep: {
    sessions: SessionConfig[];
    /** ifindexes of the taps of running sessions */
    running: Set<number>;
  }): Promise<string[]> {
    const shared = new Set<string>();
    const byKey = new Map<string, SessionConfig>();
    for (const s of keep.sessions) {
      const { bridge, vlanIf } = interfaceNames(s);
      if (bridge) shared.add(bridge);
      if (vlanIf) shared.add(vlanIf);
      byKey.set(sessionKey(s.tunnel_id, s.session_id), s);
    }
    const stale: LinkInfo[] = [];
    for (const l of await this.rtnl.listLinks()) {
      const owner = parseSessionAlias(l.alias);
      if (owner) {
        const s = byKey.get(sessionKey(owner.tunnel_id, owner.session_id));
        const named = s === undefined ? undefined : interfaceNames(s).own;
        if (keep.running.has(l.index) || (s && (named === undefined || named === l.name))) continue;
        if (owner.enslaved !== undefined && l.master !== undefined) await this.giveBack(owner.enslaved, l.master, keep.sessions);
        stale.push(l);
      } else if (l.alias === SHARED_ALIAS && !shared.has(l.name)) {
        stale.push(l);
      }
    }
    // Taps and VLAN interfaces before bridges, so a bridge is never deleted under a port we still
    // use; each group in one kernel batch (one RCU grace period for all, not one per interface).
    const removed: string[] = [];
    for (const batch of [stale.filter((l) => l.kind !== 'bridge'), stale.filter((l) => l.kind === 'bridge')]) {
      if (batch.length === 0) continue;
      let failed = new Set<number>();
      try {
        await this.rtnl.deleteLinks(batch.map((l) => l.index));
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cannot remove leftover interfaces');
        // What is still there was not removed.
        failed = new Set((await this.rtnl.listLinks().catch(() => batch)).map((l) => l.index));
      }
      for (const l of batch) {
        if (failed.has(l.index)) continue;
        removed.push(l.name);
        if (removed.length <= SWEEP_LOG_LINES_MAX) this.log.info({ interface: l.name, alias: l.alias }, 'removed interface l2tpd created and the config no longer names');
      }
    }
    if (removed.length > SWEEP_LOG_LINES_MAX) {
      this.log.info({ interfaces: removed.length - SWEEP_LOG_LINES_MAX }, 'removed more interfaces l2tpd created and the config no longer names (not listed)');
    }
    return removed;
  }

  /**
   * Compare a running session's interfaces with the intended state and put them back: recreate
   * a deleted or renamed tap (returned as newTap for the data plane), recreate a missing bridge
   * or VLAN interface, re-enslave ports, bring the tap back up. Returns what was repaired.
   */
  async repair(s: SessionConfig, links: SessionLinks, mtu: number): Promise<Repair[]> {
    const repairs: Repair[] = [];
    let tap = await this.rtnl.linkByIndex(links.ifindex);
    if (!tap || tap.name !== links.ifname) {
      const what = tap ? `interface ${links.ifname} was renamed to ${tap.name}: recreated as ${links.ifname}`
        : `interface ${links.ifname} was deleted: recreated`;
      if (tap && parseSessionAlias(tap.alias)) await this.rtnl.deleteLink(tap.index).catch(() => undefined);
      const opened = await this.openTap({ ...s, name: links.ifname }, mtu, [], undefined, links.enslavedVlan);
      tap = opened.link;
      links.ifindex = tap.index;
      repairs.push({ what, newTap: opened.tap });
    } else if (!tap.up) {
      await this.rtnl.setLink(tap.index, { up: true });
      repairs.push({ what: `interface ${links.ifname} was set down: brought up` });
    }
    if (links.bridge === undefined) return repairs;
    // What is recreated stays (nothing to undo): the same steps as setup, so the same checks and MTU.
    const kept: Undo[] = [];
    const bridge = await this.ensureBridge(links.bridge, mtu, kept);
    const br = bridge.link;
    links.bridgeIndex = br.index;
    if (bridge.created) repairs.push({ what: `bridge ${links.bridge} was missing: recreated` });
    if (tap.master !== br.index) {
      await this.rtnl.setLink(tap.index, { master: br.index });
      repairs.push({ what: `interface ${links.ifname} was not in bridge ${links.bridge}: re-enslaved` });
    }
    if (links.vlanIf !== undefined) {
      const vlan = await this.ensureVlan(s, mtu, kept);
      const v = vlan.link;
      if (vlan.created) repairs.push({ what: `VLAN interface ${links.vlanIf} was missing: recreated` });
      if (v.master !== br.index) {
        await this.rtnl.setLink(v.index, { master: br.index });
        repairs.push({ what: `${links.vlanIf} was not in bridge ${links.bridge}: re-enslaved` });
      }
    }
    return repairs;
  }

  /**
   * The ports of the session's bridge (and the bridge itself) whose MTU is above the session's,
   * from a link dump. The bridge drops, without a count anywhere, every frame larger than the
   * port it leaves by, so frames from these larger than `mtu` never reach the pseudowire.
   */
  static portsOverMtu(links: SessionLinks, mtu: number, dump: LinkInfo[]): PortOverMtu[] {
    if (links.bridge === undefined) return [];
    const br = dump.find((l) => l.name === links.bridge && l.kind === 'bridge');
    if (!br) return [];
    return dump
      .filter((l) => (l.index === br.index || l.master === br.index) && l.index !== links.ifindex && l.mtu > mtu)
      .map((l) => ({ interface: l.name, mtu: l.mtu }));
  }
}

/**
 * Close a tap's fd on a libuv pool thread: every tap close here goes through this. A tap's
 * close() detaches its queue behind an RCU grace period, and removes a tap that is not
 * persistent (about 16 ms here): a reload stopping ten thousand sessions, or a delete, need not
 * hold up the event loop for that. Nothing may use the fd once this is called.
 */
function closeOffLoop(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** Clear persist and close: the kernel removes the tap. */
async function dropTap(tap: TapHandle): Promise<void> {
  try { native.tapSetPersist(tap.fd, false); } catch { /* already detached */ }
  await closeOffLoop(tap.fd);
}

/** Netlink failures while applying a session become errors naming the config word. */
function explain(s: SessionConfig, err: unknown): unknown {
  if (!(err instanceof NetlinkError)) return err;
  if (s.vlan !== undefined && err.op.startsWith('create vlan')) {
    const reason = err.code === 'EOPNOTSUPP'
      ? 'EOPNOTSUPP: the kernel has no 802.1Q support (CONFIG_VLAN_8021Q)'
      : err.message;
    return new ConfigError('vlan', s.vlan, `a VLAN the kernel can create on ${s.dev}`,
      `vlan ${s.vlan} dev ${s.dev}: cannot create VLAN interface ${interfaceNames(s).vlanIf}: ${reason}`);
  }
  const br = interfaceNames(s).bridge;
  if (br !== undefined && err.op.includes(`bridge ${br}`)) {
    return new ConfigError(s.bridge !== undefined ? 'bridge' : 'vlan', s.bridge ?? s.vlan, 'a bridge l2tpd can create',
      `${s.bridge !== undefined ? `bridge ${s.bridge}` : `vlan ${s.vlan}`}: cannot create bridge ${br}: ${err.message}`);
  }
  return err;
}
