/**
 * Bash completion of l2tpctl, driven the way bash drives it: completion/l2tpctl.bash is sourced
 * into a real bash, COMP_WORDS and COMP_CWORD are set for a command line, _l2tpctl runs and
 * COMPREPLY is read back. The l2tpctl it calls is the built one, talking to an API server with
 * tunnels and sessions, so IDs come from the "daemon".
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startApiServer } from '../../src/control/api.js';
import { validateConfig } from '../../src/control/validate.js';
import { commandLineOrder } from '../../src/control/vocabulary.js';
import { TUNNEL_WORDS } from '../../src/control/tunnel-words.js';
import { SESSION_WORDS } from '../../src/control/session-words.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { hasCommand } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { shortDir } from '../helpers/tmp.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const skip = !hasCommand('bash') ? 'bash is not installed' : !fs.existsSync(CLI) ? 'dist/ not built (npm run build)' : false;

t.test('completing l2tpctl command lines in bash', { skip }, async (t) => {
  const dir = shortDir(t);
  const sock = path.join(dir, 'l2tpd.sock');
  const engine = new FakeEngine();
  const tunnel = (id: number) => ({ tunnel_id: id, peer_tunnel_id: id, encap: 'udp' as const, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: id, udp_dport: id });
  engine.cfg = validateConfig({
    tunnels: [tunnel(3000), tunnel(3001)],
    sessions: [{ tunnel_id: 3000, session_id: 1000, peer_session_id: 1 }, { tunnel_id: 3000, session_id: 1001, peer_session_id: 2 },
      { tunnel_id: 3001, session_id: 2000, peer_session_id: 3 }],
  });
  const server = await startApiServer(sock, engine);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'bin', 'l2tpctl'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'site-a.sh'), '');

  // Each case: the words before the cursor, the word being completed, what must be offered.
  const cases: Array<[string, string, string[]]> = [
    ['', '', ['add', 'del', 'show', 'reload', 'status', 'import', 'help', 'tunnel', 'session', '--socket', '--json', '-j', '--help', '--version', '-V']],
    ['', 'sh', ['show']],
    ['add', '', ['tunnel', 'session']],
    ['session', '', ['add', 'del', 'show']],
    ['add tunnel tunnel_id 10', 'udp', ['udp_sport', 'udp_dport', 'udp_csum', 'udp6_csum_tx', 'udp6_csum_rx']],
    ['add tunnel', 'en', ['encap']],
    ['add tunnel encap', '', ['ip', 'udp']],
    ['add tunnel udp_csum', '', ['on', 'off']],
    ['add session', 'l2', ['l2spec_type']],
    // Every word of the table, so a word added there is completed with no other change.
    ['add session', '', commandLineOrder(SESSION_WORDS).map((w) => w.word)],
    ['add tunnel tid 10 peer_tunnel_id 20', '', TUNNEL_WORDS.map((w) => w.word).filter((w) => !['tunnel_id', 'peer_tunnel_id'].includes(w))],
    ['add session l2spec_type', '', ['none', 'default']],
    ['session add seq', '', ['none', 'send', 'recv', 'both']],
    ['add session tunnel_id', '', ['3000', '3001']],
    ['del tunnel tunnel_id', '30', ['3000', '3001']],
    ['del session tunnel_id 3000 session_id', '', ['1000', '1001']],
    ['del session tid 3001 sid', '', ['2000']],
    ['show session -s', '', ['tunnel_id', 'session_id']],
    ['show tunnel', '', ['tunnel_id', '-s']],
    ['-j show session tunnel_id 3000', '', ['session_id', '-s']],
    ['add tunnel tunnel_id', '', []],
    ['reload', '', []],
    ['import --dry-run', `${dir}/site`, [`${dir}/site-a.sh`]],
  ];
  const script = [
    `source "${path.join(ROOT, 'completion', 'l2tpctl.bash')}"`,
    'complete -p l2tpctl',
    'comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _l2tpctl; local IFS="|"; echo "${COMPREPLY[*]}"; }',
    ...cases.map(([before, cur]) => `comp l2tpctl --socket "${sock}" ${before} "${cur}"`),
  ].join('\n');
  const r = await promisify(execFile)('bash', ['--norc', '--noprofile', '-c', script], {
    env: { PATH: `${path.join(dir, 'bin')}:/usr/bin:/bin`, HOME: dir }, timeout: 120000,
  });
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'complete -F _l2tpctl l2tpctl', 'the function is registered for l2tpctl');
  cases.forEach(([before, cur, expected], i) => {
    t.same(lines[i + 1] === '' ? [] : lines[i + 1].split('|'), expected, `l2tpctl ${before} ${cur}<TAB>`);
  });
  t.equal(r.stderr, '', 'nothing on stderr');

  // Without a daemon, IDs are simply not offered; the words still are.
  const gone = await promisify(execFile)('bash', ['--norc', '--noprofile', '-c', [
    `source "${path.join(ROOT, 'completion', 'l2tpctl.bash')}"`,
    'COMP_WORDS=(l2tpctl --socket /nonexistent/l2tpd.sock del tunnel tunnel_id ""); COMP_CWORD=6; _l2tpctl; echo "[${COMPREPLY[*]}]"',
    'COMP_WORDS=(l2tpctl --socket /nonexistent/l2tpd.sock del tunnel ""); COMP_CWORD=5; _l2tpctl; echo "[${COMPREPLY[*]}]"',
  ].join('\n')], { env: { PATH: `${path.join(dir, 'bin')}:/usr/bin:/bin`, HOME: dir }, timeout: 60000 });
  t.equal(gone.stdout, '[]\n[tunnel_id]\n');
});
