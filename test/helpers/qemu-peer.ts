/**
 * QEMU as an independent L2TPv3 peer without a guest (docs/protocol.md "QEMU"): -netdev tap and
 * -netdev l2tpv3 joined by a hub, started in a namespace and stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { nsRun, stopProcess, waitUntil } from './netns.js';

export const QEMU = 'qemu-system-x86_64';

export interface QemuPeerOptions {
  /** The tap QEMU creates on its side. */
  tap: string;
  /** QEMU's own address (src) and l2tpd's (dst). */
  local: string;
  remote: string;
  udp: boolean;
  /** UDP only: QEMU's source port and the port it sends to. */
  srcport?: number;
  dstport?: number;
  /** The session ID QEMU sends (l2tpd's session_id) and the one it expects (l2tpd's peer_session_id). */
  txsession: number;
  rxsession: number;
  /** More -netdev l2tpv3 options (cookies, counter=on, ipv6=on, …). */
  extra?: string[];
}

export interface QemuPeer {
  proc: ChildProcess;
  log: string[];
  stop(): Promise<void>;
}

/** Start QEMU in `ns` and wait for its tap; throws with QEMU's output if it does not come up. */
export async function startQemuPeer(ns: string, o: QemuPeerOptions): Promise<QemuPeer> {
  const l2 = ['id=l0', `src=${o.local}`, `dst=${o.remote}`, `udp=${o.udp ? 'on' : 'off'}`,
    `txsession=${o.txsession}`, `rxsession=${o.rxsession}`, ...(o.extra ?? [])];
  if (o.udp) l2.push(`srcport=${o.srcport}`, `dstport=${o.dstport}`);
  const args = ['-machine', 'none', '-nodefaults', '-display', 'none',
    '-netdev', `tap,id=t0,ifname=${o.tap},script=no,downscript=no`,
    '-netdev', `l2tpv3,${l2.join(',')}`,
    '-netdev', 'hubport,id=h0,hubid=0,netdev=t0', '-netdev', 'hubport,id=h1,hubid=0,netdev=l0'];
  const proc = spawn('ip', ['netns', 'exec', ns, QEMU, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  proc.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  proc.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
  const stop = async (): Promise<void> => { await stopProcess(proc, 'SIGTERM', 3000); };
  const up = await waitUntil(() => proc.exitCode === null && nsRun(ns, 'ip', ['link', 'show', o.tap], 5000).status === 0, 15000);
  if (!up) {
    await stop();
    throw new Error(`QEMU did not create tap ${o.tap}: ${log.join('')}`);
  }
  return { proc, log, stop };
}
