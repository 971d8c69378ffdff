/**
 * The README's install path, end to end: `npm pack`, then `npm install -g` of the tarball into
 * a fresh prefix, the way an operator installs it. The installed copy must work on its own:
 * `l2tpctl --help`, an `l2tpd` started in a namespace that creates a session through the
 * installed native addon and answers the installed `l2tpctl`, and `l2tpd-install-service`
 * staging units (checked by systemd-analyze) that run the installed package.
 */
import t from 'tap';
import type tap from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { validateConfig } from '../../src/control/validate.js';
import { createNetns, deleteNetns, hasCommand, netnsUnavailable, nsExec, sleep, stopProcess } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { shortDir } from '../helpers/tmp.js';

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const built = existsSync(path.join(ROOT, 'dist', 'daemon', 'main.js'));
const skip = !built ? 'dist/ not built (npm run build)' : !hasCommand('npm') ? 'npm is not installed' : false;
// npm install -g compiles the native addon: minutes on a busy 2-vCPU machine, beyond tap's default.
t.setTimeout(900_000);
const BASH_COMPLETION = '/usr/share/bash-completion/bash_completion';
/** Each page, its section, and a line its NAME section has. */
const MAN_PAGES: Array<[string, string, RegExp]> = [
  ['l2tpd.8', '8', /l2tpd - userspace L2TPv3 pseudowire daemon/],
  ['l2tpctl.8', '8', /l2tpctl - control l2tpd with the words of ip l2tp/],
  ['l2tpd.json.5', '5', /l2tpd\.json - configuration file of l2tpd/],
];

/** Run a command, fail the test with its output unless it exits 0; returns stdout. */
function ok(t: tap.Test, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60000 });
  t.equal(r.status, 0, `${path.basename(cmd)} ${args.join(' ')} exits 0${r.status === 0 ? '' : `:\n${r.stdout}${r.stderr}${r.error ?? ''}`}`);
  return r.stdout ?? '';
}

t.test('npm pack + npm install -g give a daemon and CLI that run', { skip }, async (t) => {
  const tmp = shortDir(t);
  // dist/ is fresh (npm test builds it first), so pack without re-running `prepare`.
  ok(t, 'npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', tmp], { cwd: ROOT });
  const tarball = path.join(tmp, `l2tpd-${VERSION}.tgz`);
  t.ok(existsSync(tarball), 'npm pack wrote the tarball');
  const listing = ok(t, 'tar', ['tzf', tarball]).split('\n');
  for (const f of ['dist/daemon/main.js', 'dist/cli/main.js', 'dist/dataplane/worker.js', 'native-bindings/binding.gyp',
    'native-bindings/src/addon.cc', 'scripts/install-service.sh', 'systemd/l2tpd.service', 'systemd/l2tpd.socket',
    'monitoring/l2tpd-alerts.yml', 'monitoring/l2tpd-dashboard.json', 'completion/l2tpctl.bash',
    ...MAN_PAGES.map(([page]) => `dist/man/${page}`)]) {
    t.ok(listing.includes(`package/${f}`), `tarball has ${f}`);
  }
  t.same(listing.filter((f) => /^package\/(src|test|bench|node_modules|native-bindings\/build)\//.test(f) || f.endsWith('.map')), [],
    'no sources, tests, build products or source maps in the tarball');

  // A clean prefix, as `npm install -g` uses it: bin/, lib/node_modules/, share/man/. The
  // cache makes the dependencies come from disk when `npm ci` ran here before. The README's
  // --allow-scripts list (a tarball is named by its absolute path) must cover every install
  // script: --strict-allow-scripts fails the install otherwise (npm >= 11; older npm ignores
  // both). lib/node_modules exists up front because npm 11's strict preflight fails on a
  // missing one.
  const prefix = path.join(tmp, 'prefix');
  mkdirSync(path.join(prefix, 'lib', 'node_modules'), { recursive: true });
  ok(t, 'npm', ['install', '-g', '--prefix', prefix, `--allow-scripts=netlink,${tarball}`, '--strict-allow-scripts',
    '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: tmp, timeoutMs: 600000 });
  const pkg = path.join(prefix, 'lib', 'node_modules', 'l2tpd');
  const bin = (name: string) => path.join(prefix, 'bin', name);
  t.ok(existsSync(path.join(pkg, 'native-bindings', 'build', 'Release', 'l2tpd_native.node')), 'the native addon was built at install');
  t.same(readdirSync(path.join(pkg, 'node_modules')).filter((d) => ['tap', 'typescript', 'raw-socket'].includes(d)), [],
    'no devDependencies installed');

  // Run from outside the checkout, with a PATH that has node but not the checkout's tools.
  const env = { ...process.env, PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin` };
  const help = ok(t, bin('l2tpctl'), ['--help'], { cwd: tmp, env });
  t.match(help, /l2tpctl add tunnel tunnel_id ID peer_tunnel_id ID/, 'installed l2tpctl --help prints the grammar');
  t.equal(ok(t, bin('l2tpd'), ['--version'], { cwd: tmp, env }).trim(), VERSION, 'installed l2tpd --version');

  t.test('the man pages are where man looks under the prefix', { skip: hasCommand('man') ? false : 'man (man-db) is not installed' }, async (t) => {
    const manEnv = { ...env, MANPATH: path.join(prefix, 'share', 'man'), MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100' };
    for (const [page, section, title] of MAN_PAGES) {
      t.ok(existsSync(path.join(prefix, 'share', 'man', `man${section}`, page)), `share/man/man${section}/${page}`);
      const r = spawnSync('man', [section, page.replace(/\.\d$/, '')], { encoding: 'utf8', env: manEnv, timeout: 60000 });
      t.equal(r.status, 0, `man ${section} ${page} ${r.stderr}`);
      t.match(r.stdout, title, `man ${page} shows the installed page`);
    }
  });

  t.test('bash-completion finds the installed completion and it completes', {
    skip: existsSync(BASH_COMPLETION) ? false : `${BASH_COMPLETION} is not installed (Debian package bash-completion)`,
  }, async (t) => {
    const link = path.join(prefix, 'share', 'bash-completion', 'completions', 'l2tpctl');
    t.ok(existsSync(link), 'share/bash-completion/completions/l2tpctl');
    // bash-completion's own loader, as an interactive shell runs it on the first TAB: it looks
    // in $XDG_DATA_DIRS/bash-completion/completions (2.11), or beside the command's bin (2.12).
    const script = [
      `source ${BASH_COMPLETION}`,
      '_completion_loader l2tpctl; complete -p l2tpctl',
      'COMP_WORDS=(l2tpctl add session seq ""); COMP_CWORD=4; _l2tpctl; echo "${COMPREPLY[*]}"',
    ].join('\n');
    const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {
      encoding: 'utf8', timeout: 60000, env: { ...env, HOME: tmp, XDG_DATA_DIRS: path.join(prefix, 'share') },
    });
    t.same(r.stdout.split('\n'), ['complete -F _l2tpctl l2tpctl', 'none send recv both', ''], r.stderr);
  });

  t.test('the installed daemon runs a session and answers the installed CLI', { skip: netnsUnavailable() }, async (t) => {
    const ns = createNetns('pk');
    t.teardown(() => deleteNetns(ns));
    nsExec(ns, 'ip', ['link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1']);
    nsExec(ns, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'ul0']);
    nsExec(ns, 'ip', ['link', 'set', 'ul0', 'up']);
    nsExec(ns, 'ip', ['link', 'set', 'ul1', 'up']);
    const dir = path.join(tmp, 'run');
    mkdirSync(dir);
    const socket = path.join(dir, 'l2tpd.sock');
    const config = path.join(dir, 'l2tpd.json');
    const daemon = spawn('ip', ['netns', 'exec', ns, bin('l2tpd'), '--config', config, '--socket', socket, '--metrics-listen', 'off'],
      { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log: string[] = [];
    daemon.stdout.on('data', (b: Buffer) => log.push(b.toString()));
    daemon.stderr.on('data', (b: Buffer) => log.push(b.toString()));
    t.teardown(() => stopProcess(daemon));
    const cli = (words: string[]) => spawnSync('ip', ['netns', 'exec', ns, bin('l2tpctl'), '--socket', socket, ...words],
      { encoding: 'utf8', cwd: tmp, env, timeout: 20000 });
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && daemon.exitCode === null && !(existsSync(socket) && cli(['status']).status === 0)) await sleep(100);
    t.equal(cli(['status']).status, 0, `the installed l2tpd answers ${log.join('')}`);
    for (const words of [
      ['add', 'tunnel', 'tunnel_id', '10', 'peer_tunnel_id', '20', 'encap', 'udp', 'local', '192.0.2.1', 'remote', '192.0.2.2',
        'udp_sport', '5000', 'udp_dport', '6000'],
      ['add', 'session', 'name', 'pkpw0', 'tunnel_id', '10', 'session_id', '1', 'peer_session_id', '2'],
    ]) {
      const r = cli(words);
      t.equal(r.status, 0, `l2tpctl ${words.slice(0, 2).join(' ')} ${r.stderr}`);
    }
    t.match(cli(['show', 'session']).stdout, /Session 1 in tunnel 10\n[^]*interface name: pkpw0/, 'show session lists it');
    t.match(nsExec(ns, 'ip', ['-d', 'link', 'show', 'pkpw0']), /tun type tap/, 'the session tap exists');
    if (existsSync(BASH_COMPLETION)) {
      // Tab completion, loaded by bash-completion from the prefix, offers the running daemon's IDs.
      const script = [
        `source ${BASH_COMPLETION}`, '_completion_loader l2tpctl',
        'comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _l2tpctl; echo "${COMPREPLY[*]}"; }',
        `comp l2tpctl --socket ${socket} del session tunnel_id ""`,
        `comp l2tpctl --socket ${socket} del session tid 10 session_id ""`,
      ].join('\n');
      const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {
        encoding: 'utf8', timeout: 60000, env: { ...env, HOME: tmp, XDG_DATA_DIRS: path.join(prefix, 'share') },
      });
      t.same(r.stdout.split('\n'), ['10', '1', ''], `completion offers the daemon's tunnel and session IDs ${r.stderr}`);
    } else {
      t.comment(`${BASH_COMPLETION} is not installed: IDs not completed`);
    }
    t.equal(await stopProcess(daemon), 0, 'SIGTERM: clean exit');
    t.same(validateConfig(JSON.parse(readFileSync(config, 'utf8'))).sessions.map((s) => s.name), ['pkpw0'], 'config written');
  });

  t.test('l2tpd-install-service stages units that run the installed package', async (t) => {
    const dest = path.join(tmp, 'stage');
    const stageEnv = { ...env, DESTDIR: dest, NODE: process.execPath };
    const out = ok(t, bin('l2tpd-install-service'), [], { cwd: tmp, env: stageEnv });
    t.match(out, /DESTDIR set: skipped creating user l2tpd/);
    const unit = readFileSync(path.join(dest, 'etc/systemd/system/l2tpd.service'), 'utf8');
    t.match(unit, `\nExecStart=${process.execPath} ${pkg}/dist/daemon/main.js --config /etc/l2tpd/l2tpd.json `, 'ExecStart runs the installed package with this node');
    t.ok(existsSync(path.join(dest, 'etc/systemd/system/l2tpd.socket')), 'socket unit staged');
    t.same(validateConfig(JSON.parse(readFileSync(path.join(dest, 'etc/l2tpd/l2tpd.json'), 'utf8'))), { tunnels: [], sessions: [] }, 'empty valid config');
    t.equal(validateConfig(JSON.parse(readFileSync(path.join(dest, 'etc/l2tpd/l2tpd.json.example'), 'utf8'))).sessions.length, 1,
      'example config is valid');
    t.same(readdirSync(path.join(dest, 'etc/systemd/system')).sort(), ['l2tpd.service', 'l2tpd.socket'], 'no temporary files left');
    t.equal(readFileSync(path.join(dest, 'etc/tmpfiles.d/l2tpd.conf'), 'utf8'), readFileSync(path.join(pkg, 'systemd/l2tpd.tmpfiles'), 'utf8'),
      'tmpfiles.d entry for /run/l2tpd staged from the package');

    if (hasCommand('systemd-analyze')) {
      const units = ['l2tpd.service', 'l2tpd.socket'].map((u) => path.join(dest, 'etc/systemd/system', u));
      const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8', timeout: 60000 });
      t.equal(r.status, 0, `systemd-analyze verify ${r.stderr}`);
      t.same(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes(dest) || /ignoring|unknown|failed/i.test(l)), [], 'no warnings');
    } else {
      t.comment('systemd-analyze is not installed: units not verified');
    }

    // Again, as after an upgrade: the units are rewritten, an existing config is kept.
    writeFileSync(path.join(dest, 'etc/l2tpd/l2tpd.json'), '{"tunnels":[],"sessions":[]}\n');
    t.match(ok(t, bin('l2tpd-install-service'), [], { cwd: tmp, env: stageEnv }), /kept existing \/etc\/l2tpd\/l2tpd\.json/);
    t.equal(readFileSync(path.join(dest, 'etc/l2tpd/l2tpd.json'), 'utf8'), '{"tunnels":[],"sessions":[]}\n', 'config untouched');
  });
});
