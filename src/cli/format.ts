/**
 * Text output of l2tpctl. Pure. `show tunnel` and `show session` print the show lines of the word
 * tables (control/tunnel-words.ts, control/session-words.ts: iproute2 6.1 `print_tunnel` /
 * `print_session` line by line, then l2tpd's own words), then the run-time state (a warning
 * about bridge ports over the MTU, state) and, with `-s`, the counters in an `ip -s link`-like
 * block.
 *
 * Differences from iproute2, on purpose: offsets are the configured ones (l2tpd implements
 * them; Linux always prints 0), `reorder timeout` is always printed, and there are no stray
 * empty lines.
 *
 * Everything printed goes through `text()`: a control character in a name or message (from an
 * older daemon, or a file edited by hand) is shown as \uXXXX, never sent raw to the terminal.
 */
import type { SessionView, TunnelView } from '../control/api.js';
import { escapeControl } from '../control/errors.js';
import { SESSION_COUNTER_NAMES, TUNNEL_COUNTER_NAMES } from '../dataplane/counters.js';
import { TUNNEL } from '../control/tunnel-words.js';
import { SESSION } from '../control/session-words.js';
import type { ShowLine } from '../control/vocabulary.js';

/** Lines joined for the terminal, control characters escaped. */
function text(lines: string[]): string {
  return lines.length ? `${lines.map(escapeControl).join('\n')}\n` : '';
}

export interface FormatOptions {
  stats?: boolean;
}

/**
 * Counters as rows: `RX:`, `TX:`, `drop:` (by name prefix, in counter order), each a header line
 * of names and a line of right-aligned values.
 */
export function formatCounters(stats: Record<string, number>, order: readonly string[], indent = '    '): string[] {
  const groups: Array<[string, Array<[string, number]>]> = [['RX', []], ['TX', []], ['drop', []], ['other', []]];
  const names = [...order, ...Object.keys(stats).filter((k) => !order.includes(k))];
  for (const name of names) {
    const value = stats[name];
    if (value === undefined || name === 'last_rx_ms') continue;
    const m = /^(rx|tx|drop)_(.+)$/.exec(name);
    const group = m ? (m[1] === 'drop' ? 'drop' : m[1].toUpperCase()) : 'other';
    const label = m ? m[2] : name;
    groups.find((g) => g[0] === group)?.[1].push([label, value]);
  }
  const lines: string[] = [];
  const head = Math.max(...groups.filter((g) => g[1].length).map((g) => g[0].length + 1), 0);
  for (const [group, cols] of groups) {
    if (cols.length === 0) continue;
    const widths = cols.map(([label, v]) => Math.max(label.length, String(v).length));
    const prefix = `${group}:`.padEnd(head);
    lines.push(`${indent}${prefix} ${cols.map(([label], i) => label.padStart(widths[i])).join(' ')}`);
    lines.push(`${indent}${' '.repeat(head)} ${cols.map(([, v], i) => String(v).padStart(widths[i])).join(' ')}`);
  }
  if (stats.last_rx_ms !== undefined) {
    lines.push(`${indent}last rx: ${stats.last_rx_ms > 0 ? new Date(stats.last_rx_ms).toISOString() : 'never'}`);
  }
  return lines;
}

/**
 * `state: up (why) since TIME`: the verdict of daemon/liveness.ts with its reason; without a
 * reason, `state: up`, or `state: down since TIME` for an entry that is down.
 */
function stateLine(v: { state?: string; reason?: unknown; since?: unknown }): string {
  const why = typeof v.reason === 'string' ? ` (${v.reason})` : '';
  const since = typeof v.since === 'string' && (why !== '' || v.state !== 'up') ? ` since ${v.since}` : '';
  return `  state: ${v.state}${why}${since}`;
}

/** What the Hello keepalive of a tunnel measured (its words have their own line); with -s its counters. */
function helloLines(h: Record<string, unknown>, stats: boolean): string[] {
  const parts = [`dead after ≤ ${h.down_after} s`];
  if (typeof h.rtt_ms === 'number') parts.push(`rtt ${h.rtt_ms.toFixed(1)} ms`);
  if (typeof h.last_heard === 'string') parts.push(`last heard ${h.last_heard}`);
  const lines = [`  hello: ${parts.join(', ')}`];
  if (stats) {
    lines.push(`    sent ${h.sent}, retransmitted ${h.retransmissions}, answered ${h.answers}; `
      + `received ${h.received}, acknowledged ${h.acks_sent}; resyncs ${h.resyncs}`);
  }
  return lines;
}

/** What the mismatch diagnostics see (daemon/diagnose.ts), one finding a line. */
function diagnosticLines(list: unknown): string[] {
  if (!Array.isArray(list) || list.length === 0) return [];
  return ['  diagnostics:', ...list.map((d: Record<string, unknown>) =>
    `    ${d.kind}: ${d.message} (seen ${d.seen}; ${d.count}×, last ${d.last_seen})`)];
}

/** The show lines of a table, in order, for one object. */
function showLines<V>(lines: readonly ShowLine<V>[], view: V): string[] {
  return lines.map((l) => l.line(view)).filter((x): x is string => x !== undefined);
}

export function formatTunnel(t: TunnelView, opts: FormatOptions = {}): string {
  const lines = showLines(TUNNEL.show, t);
  if (typeof t.sessions === 'number') lines.push(`  sessions: ${t.sessions}`);
  if (t.state !== undefined) lines.push(stateLine(t));
  if (t.error !== undefined) lines.push(`  error: ${t.error}`);
  if (t.hello && typeof t.hello === 'object') lines.push(...helloLines(t.hello as Record<string, unknown>, opts.stats === true));
  if (opts.stats && t.stats) lines.push(...formatCounters(t.stats, TUNNEL_COUNTER_NAMES));
  if (opts.stats) lines.push(...diagnosticLines(t.diagnostics));
  return text(lines);
}

export function formatSession(s: SessionView, opts: FormatOptions = {}): string {
  const lines = showLines(SESSION.show, s);
  if (s.ports_over_mtu?.length) {
    const ports = s.ports_over_mtu.map((p) => `${p.interface} (mtu ${p.mtu})`).join(', ');
    lines.push(`  warning: bridge ${s.bridge} drops frames over ${s.mtu} bytes from ${ports}`);
  }
  if (s.state !== undefined) lines.push(stateLine(s));
  if (s.error !== undefined) lines.push(`  error: ${s.error}`);
  if (opts.stats && s.stats) lines.push(...formatCounters(s.stats, SESSION_COUNTER_NAMES));
  if (opts.stats) lines.push(...diagnosticLines(s.diagnostics));
  return text(lines);
}

export function formatTunnels(list: TunnelView[], opts: FormatOptions = {}): string {
  return list.map((t) => formatTunnel(t, opts)).join('');
}

export function formatSessions(list: SessionView[], opts: FormatOptions = {}): string {
  return list.map((s) => formatSession(s, opts)).join('');
}

/** `key: value` lines for status and reload results; nested values as compact JSON. */
export function formatKeyValues(obj: Record<string, unknown>): string {
  const lines = Object.entries(obj).map(([k, v]) =>
    `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
  return text(lines);
}

export function formatJson(value: unknown): string {
  // JSON.stringify escapes C0 but leaves DEL and C1; \uXXXX keeps the JSON valid.
  return `${escapeControl(JSON.stringify(value, null, 2))}\n`;
}
