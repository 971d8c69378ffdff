import type { SessionSpec, TunnelSpec } from './forwarder.js';
import type { StatusBuffers } from './status.js';

/** The worker thread's name (PR_SET_NAME, at most 15 bytes). */
export const DATAPLANE_THREAD_NAME = 'l2tpd-dataplane';

export interface WorkerInit {
  pool: SharedArrayBuffer;
  sessionCounters: SharedArrayBuffer;
  tunnelCounters: SharedArrayBuffer;
  /** Hello status and diagnostics rows (status.ts). */
  status: StatusBuffers;
  /** eventfd the control plane signals after each request, so a busy slice ends and reads it. */
  wakeFd: number;
}

export type DataPlaneRequest =
  | { id: number; op: 'addTunnel'; tunnel: TunnelSpec }
  | { id: number; op: 'delTunnel'; slot: number }
  | { id: number; op: 'addSession'; session: SessionSpec }
  | { id: number; op: 'delSession'; slot: number }
  | { id: number; op: 'ping' }
  | { id: number; op: 'stop' };

export type DataPlaneReply = { id: number; ok: true } | { id: number; ok: false; error: string };
