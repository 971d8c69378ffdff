/**
 * Crafting L2TPv3 data packets from outside the daemon (test/helpers/crafter.cjs: node:dgram and
 * the raw-socket package) and reading the counters they should move.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './paths.js';
import type { Daemon, Sites } from './sites.js';

export const CRAFTER = path.join(ROOT, 'test', 'helpers', 'crafter.cjs');

export interface CraftJob {
  proto: 'udp4' | 'udp6' | 'ip4';
  to: string;
  toPort?: number;
  from?: string;
  fromPort?: number;
  hdrSrc?: string;
  hex?: string;
  hexList?: string[];
  size?: number;
  count?: number;
  gapMs?: number;
}

/** Run the crafter in a namespace; returns how many packets each job sent. */
export function craft(ns: string, jobs: CraftJob[], timeoutMs = 120000): { sent: number[]; errors: Array<string | null> } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, CRAFTER, JSON.stringify({ jobs })],
    { encoding: 'utf8', timeout: timeoutMs, env });
  if (r.status !== 0) throw new Error(`crafter failed (${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** An Ethernet frame whose payload carries `index` (ethertype 0x88b5, local experimental). */
export function frameHex(index: number, length = 60): string {
  const b = Buffer.alloc(Math.max(length, 18), 0);
  b.fill(0xff, 0, 6);
  Buffer.from([0x02, 0, 0, 0, 0, 0x01]).copy(b, 6);
  b.writeUInt16BE(0x88b5, 12);
  b.writeUInt32BE(index >>> 0, 14);
  return b.toString('hex');
}

/** L2SS of the default L2-specific sublayer: S bit and 24-bit number, or S=0 when seq is null. */
export function l2ssHex(seq: number | null): string {
  const b = Buffer.alloc(4);
  if (seq !== null) b.writeUInt32BE((0x40000000 | (seq & 0xffffff)) >>> 0);
  return b.toString('hex');
}

function u32(v: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b.toString('hex');
}

/** UDP encapsulation: flags/version 0x0003, reserved, session id, cookie, [L2SS], frame. */
export function udpData(sessionId: number, cookieHex: string, l2ss: string, frame: string): string {
  return `00030000${u32(sessionId)}${cookieHex}${l2ss}${frame}`;
}

/** IP encapsulation: session id, cookie, [L2SS], frame. */
export function ipData(sessionId: number, cookieHex: string, l2ss: string, frame: string): string {
  return `${u32(sessionId)}${cookieHex}${l2ss}${frame}`;
}

export type Counters = Record<string, number>;

export function tunnelStats(sites: Sites, d: Daemon): Map<number, Counters> {
  const rows = sites.json<Array<{ tunnel_id: number; stats: Counters }>>(d, ['show', 'tunnel', '-s']);
  return new Map(rows.map((r) => [r.tunnel_id, r.stats]));
}

export function sessionStats(sites: Sites, d: Daemon): Map<number, Counters> {
  const rows = sites.json<Array<{ session_id: number; stats: Counters }>>(d, ['show', 'session', '-s']);
  return new Map(rows.map((r) => [r.session_id, r.stats]));
}

/** l2tp_tunnel_rx_drops_total by tunnel_id ('' = raw IP packets that matched no tunnel) and reason. */
export function metricDrops(ns: string, port: number): Map<string, number> {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'curl', '-sf', `http://127.0.0.1:${port}/metrics`], { encoding: 'utf8', timeout: 20000 });
  const out = new Map<string, number>();
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^l2tp_tunnel_rx_drops_total\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const tid = /tunnel_id="([^"]*)"/.exec(m[1])?.[1] ?? '?';
    const reason = /reason="([^"]*)"/.exec(m[1])?.[1] ?? '?';
    out.set(`${tid}/${reason}`, Number(m[2]));
  }
  return out;
}

/** Differences after - before for every key of after. */
export function diff(after: Counters, before: Counters | undefined): Counters {
  const d: Counters = {};
  for (const k of Object.keys(after)) d[k] = after[k] - (before?.[k] ?? 0);
  return d;
}

/** A reason to skip when the raw-socket package is not built (npm may not run its install script). */
export function rawSocketUnavailable(): string | false {
  try {
    require('raw-socket');
    return false;
  } catch (err) {
    return `raw-socket (devDependency) cannot be loaded: ${(err as Error).message.split('\n')[0]}; build it with npm rebuild raw-socket`;
  }
}
