/**
 * The control plane's handle on the data plane: allocates the shared pool and counters, starts
 * the worker, and turns requests into promises. Counters are read here, at scrape time, straight
 * from shared memory.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { SESSION_TX_WIDTH, SLOT_COUNT, SLOT_SIZE, SessionTx, seedSessionTx } from './layout.js';
import {
  SESSION_COUNTER_BYTES, SESSION_COUNTER_NAMES, SESSION_ROW_WIDTH, TUNNEL_COUNTER_BYTES, TUNNEL_COUNTER_NAMES, TUNNEL_ROW_WIDTH,
} from './counters.js';
import type { DataPlaneReply, DataPlaneRequest, WorkerInit } from './messages.js';
import { HELLO_ROW_WIDTH, HelloField, SESSION_DIAG_WIDTH, TUNNEL_DIAG_WIDTH, allocateStatusBuffers } from './status.js';
import { native } from '../native/index.js';
import type { SessionSpec, TunnelSpec } from './forwarder.js';

export type { SessionSpec, TunnelSpec } from './forwarder.js';

type Pending = { resolve: () => void; reject: (e: Error) => void };
type Request = DataPlaneRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** The worker runs compiled JavaScript; under ts-node (tests) use the build in dist/. */
function workerFile(): string {
  return __filename.endsWith('.ts')
    ? path.resolve(__dirname, '..', '..', 'dist', 'dataplane', 'worker.js')
    : path.join(__dirname, 'worker.js');
}

export class DataPlane {
  readonly sessionCounters = new Float64Array(new SharedArrayBuffer(SESSION_COUNTER_BYTES));
  readonly tunnelCounters = new Float64Array(new SharedArrayBuffer(TUNNEL_COUNTER_BYTES));
  private readonly statusBuffers = allocateStatusBuffers();
  /** Per tunnel slot: the Hello status the worker publishes (status.ts HelloField). */
  readonly helloStatus = new Float64Array(this.statusBuffers.hello);
  /** [0]: incremented and notified by the worker on every Hello verdict. */
  readonly helloSignal = new Int32Array(this.statusBuffers.signal);
  /** Per tunnel slot (and HOST_ROW) and per session slot: the diagnostics rows (status.ts). */
  readonly tunnelDiag = new Float64Array(this.statusBuffers.tunnelDiag);
  readonly sessionDiag = new Float64Array(this.statusBuffers.sessionDiag);
  /** Per-session transmit state (layout.ts SessionTx): seeded here, kept current by the worker. */
  readonly sessionTx = new Int32Array(this.statusBuffers.sessionTx);
  private readonly worker: Worker;
  /** Ends the worker's forwarding slice so it reads our message now (see worker.ts). */
  private readonly wakeFd = native.wakeOpen();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited = false;

  constructor(onExit?: (code: number) => void) {
    const init: WorkerInit = {
      pool: new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE),
      sessionCounters: this.sessionCounters.buffer as SharedArrayBuffer,
      tunnelCounters: this.tunnelCounters.buffer as SharedArrayBuffer,
      status: this.statusBuffers,
      wakeFd: this.wakeFd,
    };
    this.worker = new Worker(workerFile(), { workerData: init });
    this.worker.on('message', (reply: DataPlaneReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve();
      else p.reject(new Error(`data plane: ${reply.error}`));
    });
    const fail = (err: Error) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      native.close(this.wakeFd);
      fail(new Error(`data plane worker exited with code ${code}`));
      onExit?.(code);
    });
  }

  private request(req: Request): Promise<void> {
    if (this.exited) return Promise.reject(new Error('data plane worker is not running'));
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id } as DataPlaneRequest);
      native.wakeSignal(this.wakeFd);
    });
  }

  addTunnel(tunnel: TunnelSpec): Promise<void> { return this.request({ op: 'addTunnel', tunnel }); }
  delTunnel(slot: number): Promise<void> { return this.request({ op: 'delTunnel', slot }); }
  addSession(session: SessionSpec): Promise<void> { return this.request({ op: 'addSession', session }); }
  delSession(slot: number): Promise<void> { return this.request({ op: 'delSession', slot }); }
  /** Resolves when the worker has answered: it is reading its messages (the service watchdog). */
  ping(): Promise<void> { return this.request({ op: 'ping' }); }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    await this.request({ op: 'stop' }).catch(() => undefined);
    await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
    if (!this.exited) await this.worker.terminate();
  }

  sessionStats(slot: number): Record<string, number> {
    return readRow(this.sessionCounters, slot * SESSION_ROW_WIDTH, SESSION_COUNTER_NAMES);
  }

  tunnelStats(slot: number): Record<string, number> {
    return readRow(this.tunnelCounters, slot * TUNNEL_ROW_WIDTH, TUNNEL_COUNTER_NAMES);
  }

  /** Zero a slot's counter and diagnostics rows (and a tunnel's Hello status) before the slot is reused. */
  resetSession(slot: number): void {
    this.sessionCounters.fill(0, slot * SESSION_ROW_WIDTH, (slot + 1) * SESSION_ROW_WIDTH);
    this.sessionDiag.fill(0, slot * SESSION_DIAG_WIDTH, (slot + 1) * SESSION_DIAG_WIDTH);
  }
  resetTunnel(slot: number): void {
    this.tunnelCounters.fill(0, slot * TUNNEL_ROW_WIDTH, (slot + 1) * TUNNEL_ROW_WIDTH);
    this.tunnelDiag.fill(0, slot * TUNNEL_DIAG_WIDTH, (slot + 1) * TUNNEL_DIAG_WIDTH);
    this.helloStatus.fill(0, slot * HELLO_ROW_WIDTH, (slot + 1) * HELLO_ROW_WIDTH);
    this.helloStatus[slot * HELLO_ROW_WIDTH + HelloField.State] = -1;
  }

  /**
   * Seed a session's transmit state before addSession: the next number to send and whether it
   * starts out numbered (its configured `seq`). A session re-added with the same slot (a new
   * tap fd) keeps what the worker left there.
   */
  seedTx(slot: number, nextSeq: number, numbered: boolean): void {
    seedSessionTx(this.sessionTx, slot, nextSeq, numbered);
  }

  /** A session's transmit state as the worker has it now. */
  txState(slot: number): { nextSeq: number; numbered: boolean; changes: number } {
    const row = slot * SESSION_TX_WIDTH;
    return {
      nextSeq: this.sessionTx[row + SessionTx.NextSeq],
      numbered: this.sessionTx[row + SessionTx.Numbering] !== 0,
      changes: this.sessionTx[row + SessionTx.Switches],
    };
  }
}

function readRow(arr: Float64Array, base: number, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  names.forEach((n, i) => { out[n] = arr[base + i]; });
  return out;
}

