/**
 * Logs under journald: every JSON line starts with the syslog priority "<N>" of its pino level,
 * and time/pid/hostname are left to journald.
 */
import t from 'tap';
import { createLogger, journaldPrefix } from '../../src/daemon/logger.js';

function capture(fn: () => void): string[] {
  const out: string[] = [];
  const orig = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => { out.push(String(chunk)); return true; }) as typeof process.stdout.write;
  try { fn(); } finally { process.stdout.write = orig; }
  return out.join('').split('\n').filter(Boolean);
}

t.test('underJournald: <6> info, <4> warn, <3> error, <2> fatal, <7> debug', async (t) => {
  const lines = capture(() => {
    const log = createLogger('debug', true);
    log.debug('d');
    log.info({ tunnel_id: 3000 }, 'session up');
    log.warn('peer unreachable');
    log.error({ err: 'boom' }, 'netlink failed');
    log.fatal('dying');
  });
  t.equal(lines.length, 5, 'one line per call');
  t.same(lines.map((l) => l.slice(0, 3)), ['<7>', '<6>', '<4>', '<3>', '<2>']);
  const info = JSON.parse(lines[1].slice(3));
  t.match(info, { level: 30, tunnel_id: 3000, msg: 'session up' });
  t.notOk('time' in info, 'no time: journald records it');
  t.notOk('pid' in info, 'no pid: journald records it');
  t.notOk('hostname' in info, 'no hostname');
});

t.test('underJournald respects the level', async (t) => {
  const lines = capture(() => {
    const log = createLogger('warn', true);
    log.info('hidden');
    log.warn('shown');
  });
  t.same(lines.map((l) => l.slice(0, 3)), ['<4>']);
});

t.test('journaldPrefix: unknown or missing level defaults to <6>', async (t) => {
  t.equal(journaldPrefix('{"msg":"x"}'), '<6>{"msg":"x"}');
  t.equal(journaldPrefix('{"level":50,"msg":"x"}'), '<3>{"level":50,"msg":"x"}');
});
