/**
 * pino JSON logs on stdout. Under journald (JOURNAL_STREAM set) each line starts with the
 * syslog priority "<N>" so journalctl shows the right level, and time/pid/hostname are left
 * to journald.
 */
import pino, { type Logger } from 'pino';

const PRIORITY: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

export function journaldPrefix(line: string): string {
  const m = /"level":(\d+)/.exec(line);
  return `<${PRIORITY[Number(m?.[1])] ?? 6}>${line}`;
}

export function createLogger(level: string, underJournald = Boolean(process.env.JOURNAL_STREAM)): Logger {
  if (!underJournald) return pino({ level, base: { pid: process.pid } });
  const dest = {
    write(line: string) { process.stdout.write(journaldPrefix(line)); },
  };
  return pino({ level, base: undefined, timestamp: false }, dest);
}
