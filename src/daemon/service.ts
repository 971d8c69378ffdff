/**
 * The daemon's side of systemd's service protocol (sd_notify(3)): readiness, stopping and watchdog
 * keepalives, sent as datagrams by the main process itself (through the addon), so the unit can
 * keep NotifyAccess=main. Outside systemd ($NOTIFY_SOCKET unset) nothing is sent.
 */

export interface NotifyLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type NotifySend = (socket: string, message: string) => void;

export class ServiceNotifier {
  private readonly socket: string | undefined;
  private failed = false;

  constructor(
    private readonly send: NotifySend,
    private readonly log: NotifyLogger,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly pid = process.pid,
  ) {
    this.socket = env.NOTIFY_SOCKET || undefined;
  }

  get enabled(): boolean { return this.socket !== undefined; }

  /** Send `KEY=value` assignments in one datagram; a failure is logged once, never thrown. */
  notify(...assignments: string[]): boolean {
    if (!this.socket) return false;
    try {
      this.send(this.socket, assignments.join('\n'));
      if (this.failed) { this.failed = false; this.log.warn({ socket: this.socket }, 'service manager notifications delivered again'); }
      return true;
    } catch (err) {
      if (!this.failed) this.log.error({ socket: this.socket, err: (err as Error).message }, 'cannot notify the service manager');
      this.failed = true;
      return false;
    }
  }

  /**
   * The watchdog interval systemd asks for (WatchdogSec= → $WATCHDOG_USEC), in ms, when it is
   * meant for this process ($WATCHDOG_PID unset or ours); undefined otherwise.
   */
  watchdogMs(): number | undefined {
    if (!this.socket) return undefined;
    const usec = Number(this.env.WATCHDOG_USEC);
    if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
    if (this.env.WATCHDOG_PID && this.env.WATCHDOG_PID !== String(this.pid)) return undefined;
    return Math.max(1, Math.floor(usec / 1000));
  }
}

export interface WatchdogOptions {
  notifier: ServiceNotifier;
  /** WATCHDOG_USEC in ms; keepalives go out at most every third of it. */
  intervalMs: number;
  /** Resolves when the data plane answers (however late). */
  probe: () => Promise<void>;
  log: NotifyLogger;
}

/**
 * Keepalives (WATCHDOG=1) that prove both threads work: each period the main thread asks the
 * data-plane worker for an answer and sends a keepalive only when it comes. A wedged worker (or a
 * blocked main thread) stops them, and systemd kills and restarts the daemon (WatchdogSec=,
 * Restart=on-failure). At most one probe is outstanding.
 */
export function startWatchdog(o: WatchdogOptions): { stop(): void } {
  const period = Math.max(1, Math.floor(o.intervalMs / 3));
  let outstanding = false;
  let lastAnswer = Date.now();
  let silent = false;
  const tick = () => {
    if (outstanding) {
      const since = Date.now() - lastAnswer;
      if (!silent && since >= period) {
        silent = true;
        o.log.error({ silent_ms: since, watchdog_ms: o.intervalMs },
          'data plane worker is not answering: watchdog keepalives withheld (systemd restarts l2tpd if this lasts)');
      }
      return;
    }
    outstanding = true;
    o.probe().then(() => {
      outstanding = false;
      lastAnswer = Date.now();
      if (silent) { silent = false; o.log.warn({}, 'data plane worker answering again: watchdog keepalives resumed'); }
      o.notifier.notify('WATCHDOG=1');
    }, () => { outstanding = false; });
  };
  tick();
  const timer = setInterval(tick, period);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** How often a start asks for more time, and how much each message grants (three periods). */
export const START_EXTEND_PERIOD_MS = 5000;

/**
 * While the configuration is applied at start (thousands of sessions take minutes under load),
 * ask systemd for more time every period: EXTEND_TIMEOUT_USEC= grants three periods from each
 * message, so TimeoutStartSec= bounds a start whose main thread stops running, not a large
 * config. Sent from a main-thread timer: a blocked main thread sends none.
 */
export function extendStartTimeout(notifier: ServiceNotifier, periodMs = START_EXTEND_PERIOD_MS): { stop(): void } {
  if (!notifier.enabled) return { stop: () => undefined };
  const message = `EXTEND_TIMEOUT_USEC=${periodMs * 3 * 1000}`;
  notifier.notify(message, 'STATUS=applying the configuration');
  const timer = setInterval(() => notifier.notify(message), periodMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
