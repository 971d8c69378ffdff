/**
 * l2tpd's command-line options, each defined once: main.ts parses and checks them from this
 * table, and the l2tpd(8) man page is written from it.
 */
import { DEFAULT_SOCKET } from '../control/api.js';

export const DEFAULT_CONFIG = '/etc/l2tpd/l2tpd.json';
export const DEFAULT_METRICS = '127.0.0.1:9701';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export interface DaemonOption {
  /** `--config`; the parsed value is under its camelCase name (`metricsListen`). */
  readonly flag: string;
  /** How the value is written: `FILE`, `HOST:PORT|off`. */
  readonly placeholder: string;
  readonly default: string;
  /** How the default reads when it is worked out at start (`--state-dir`); else `default`. */
  readonly defaultText?: string;
  /** An environment variable that, when set and not empty, replaces the default. */
  readonly env?: string;
  /** The only values allowed, when they are fixed. */
  readonly values?: readonly string[];
  /** One line, for `l2tpd --help`. */
  readonly summary: string;
  /** What it does, for the man page. */
  readonly help: string;
}

export const DAEMON_OPTIONS: readonly DaemonOption[] = [
  {
    flag: '--config', placeholder: 'FILE', default: DEFAULT_CONFIG, summary: 'persistent configuration (JSON)',
    help: 'The configuration file: the tunnels and sessions that should run (l2tpd.json(5)). It is read at start and '
      + 'on SIGHUP, and rewritten atomically after every change made through the control API. A missing file means '
      + 'start with nothing.',
  },
  {
    flag: '--socket', placeholder: 'PATH', default: DEFAULT_SOCKET, env: 'L2TPD_SOCKET', summary: 'control API UNIX socket',
    help: 'The control API: HTTP/1.1 and JSON on this UNIX socket, mode 0660, which l2tpctl(8) talks to. Under systemd '
      + 'socket activation (LISTEN_FDS=1) the socket passed as fd 3 is used instead.',
  },
  {
    flag: '--state-dir', placeholder: 'DIR', default: '',
    defaultText: '$STATE_DIRECTORY (under systemd: `/var/lib/l2tpd`), else the configuration file\'s directory',
    summary: 'where each session\'s send numbering is kept across restarts',
    help: 'Where `tx-sequence.json` is kept: each sequenced session\'s next send number, written atomically, so that a '
      + 'restart, a reload or a crash continues the numbering and a Linux peer drops nothing (after a crash, 5 frames).',
  },
  {
    flag: '--metrics-listen', placeholder: 'HOST:PORT|off', default: DEFAULT_METRICS, summary: 'Prometheus /metrics listener',
    help: 'Where Prometheus scrapes /metrics (see METRICS); an IPv6 host is written in brackets. `off` serves no metrics.',
  },
  {
    flag: '--log-level', placeholder: 'LEVEL', default: 'info', values: LOG_LEVELS, summary: LOG_LEVELS.join(', ').replace(/, (\w+)$/, ' or $1'),
    help: 'The least severe log lines written: JSON lines (pino) on standard output; under journald each line carries '
      + 'its syslog priority.',
  },
  {
    flag: '--offload', placeholder: 'on|off', default: 'on', env: 'L2TPD_OFFLOAD', values: ['on', 'off'],
    summary: 'tap checksum and TCP segmentation offload (IFF_VNET_HDR + TSO)',
    help: 'Open session taps with checksum and TCP segmentation offload. TCP super-frames from the host are cut into '
      + 'MSS-sized frames with complete checksums before they are encapsulated, and consecutive segments of one TCP '
      + 'flow are merged on the way to the tap, so the peer sees exactly what it would without offload. `off` opens '
      + 'plain taps (and clears the offloads of taps found again).',
  },
];

/** The option's value when it is not given: its environment variable, if set and not empty, else its default. */
export function optionDefault(o: DaemonOption, env: NodeJS.ProcessEnv = process.env): string {
  return (o.env !== undefined && env[o.env]) || o.default;
}

/** The key of the parsed value: `--metrics-listen` is `metricsListen`. */
export function optionKey(o: DaemonOption): string {
  return o.flag.slice(2).replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
}

/** Why `value` is not allowed for `o`, or undefined when it is. */
export function refuseValue(o: DaemonOption, value: string): string | undefined {
  if (o.values === undefined || o.values.includes(value)) return undefined;
  const allowed = o.values.length === 2 ? `${o.values[0]} or ${o.values[1]}` : `one of ${o.values.join(', ')}`;
  return `${o.flag} "${value}": expected ${allowed}`;
}
