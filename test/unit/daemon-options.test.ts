/**
 * l2tpd refuses a bad command-line option before it touches anything: exit status 2, and the
 * message names the option, the value and what is allowed.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/paths.js';

const DAEMON = path.join(ROOT, 'dist', 'daemon', 'main.js');
const { L2TPD_OFFLOAD: _unset, ...cleanEnv } = process.env;

const cases: Array<[string[], RegExp]> = [
  [['--offload', 'maybe'], /--offload "maybe": expected on or off/],
  [['--log-level', 'loud'], /--log-level "loud": expected one of fatal, error, warn, info, debug, trace/],
  [['--metrics-listen', 'nowhere'], /--metrics-listen "nowhere": expected HOST:PORT \(port 1\.\.65535\) or off/],
];

t.test('bad options are refused with the option, the value and what is allowed', { skip: existsSync(DAEMON) ? false : 'dist/ not built' }, async (t) => {
  for (const [args, message] of cases) {
    // A config path that cannot exist: refusing must come before the config is read.
    const r = spawnSync(process.execPath, [DAEMON, '--config', '/nonexistent/l2tpd-test.json', '--socket', '/nonexistent/l2tpd.sock', ...args],
      { encoding: 'utf8', timeout: 20000, env: cleanEnv });
    t.equal(r.status, 2, `${args.join(' ')}: exit status 2`);
    t.match(r.stderr, message, `${args.join(' ')}: says what is wrong`);
  }
  const env = spawnSync(process.execPath, [DAEMON, '--config', '/nonexistent/l2tpd-test.json'],
    { encoding: 'utf8', timeout: 20000, env: { ...cleanEnv, L2TPD_OFFLOAD: 'yes' } });
  t.equal(env.status, 2, 'L2TPD_OFFLOAD is checked like --offload');
  t.match(env.stderr, /--offload "yes": expected on or off/);
});
