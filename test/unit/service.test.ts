/**
 * The systemd units pass `systemd-analyze verify` with no warnings (run on copies whose
 * ExecStart points at this checkout's dist/ and this node, since verify needs the binary), and
 * scripts/install-service.sh installs the expected tree under DESTDIR.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig } from '../../src/control/validate.js';
import { hasCommand } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { shortDir } from '../helpers/tmp.js';

const UNIT = path.join(ROOT, 'systemd', 'l2tpd.service');
const SOCKET = path.join(ROOT, 'systemd', 'l2tpd.socket');
const hasAnalyze = hasCommand('systemd-analyze');
const built = existsSync(path.join(ROOT, 'dist', 'daemon', 'main.js'));

function rewritten(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/usr\/bin\/node /g, `${process.execPath} `)
    .replace(/\/opt\/l2tpd\//g, `${ROOT}/`);
}

t.test('l2tpd.service declares the service contract', async (t) => {
  const unit = readFileSync(UNIT, 'utf8');
  const has = (line: string) => t.match(unit, new RegExp(`^${line.replace(/[$]/g, '\\$')}$`, 'm'), line);
  has('Type=notify');
  has('ExecReload=/bin/kill -HUP $MAINPID');
  has('User=l2tpd');
  has('AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW');
  has('CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW');
  has('NoNewPrivileges=yes');
  has('RuntimeDirectory=l2tpd');
  has('StateDirectory=l2tpd');
  has('ConfigurationDirectory=l2tpd');
  has('DeviceAllow=/dev/net/tun rw');
  has('RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK');
  t.match(unit, /^ExecStart=\/usr\/bin\/node \/opt\/l2tpd\/dist\/daemon\/main\.js --config \/etc\/l2tpd\/l2tpd\.json --socket \/run\/l2tpd\/l2tpd\.sock /m);
  t.notMatch(unit, /^PrivateDevices=yes/m, 'PrivateDevices would hide /dev/net/tun');
  t.notMatch(unit, /^MemoryDenyWriteExecute=yes/m, 'V8 needs W+X memory');
  t.notMatch(unit, /^PrivateNetwork=yes/m);
  const sock = readFileSync(SOCKET, 'utf8');
  t.match(sock, /^ListenStream=\/run\/l2tpd\/l2tpd\.sock$/m, 'socket unit listens where --socket points');
  t.match(sock, /^SocketMode=0660$/m);
});

t.test('systemd-analyze verify passes with no warnings', {
  skip: !hasAnalyze ? 'systemd-analyze is not installed' : !built ? 'dist/ not built (npm run build)' : false,
}, async (t) => {
  const dir = shortDir(t);
  writeFileSync(path.join(dir, 'l2tpd.service'), rewritten(UNIT));
  writeFileSync(path.join(dir, 'l2tpd.socket'), rewritten(SOCKET));
  const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'l2tpd.service'), path.join(dir, 'l2tpd.socket')],
    { encoding: 'utf8', timeout: 60000 });
  t.equal(r.status, 0, `exit 0 ${r.stderr}`);
  // verify exits 0 on unknown or malformed settings too: any output is a warning.
  const warnings = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes(dir) || /ignoring|unknown|failed/i.test(l));
  t.same(warnings, [], 'no warnings');

  // The check is live: a broken setting does produce a warning.
  writeFileSync(path.join(dir, 'l2tpd.service'), rewritten(UNIT).replace('Type=notify', 'Type=notifyy'));
  const bad = spawnSync('systemd-analyze', ['verify', path.join(dir, 'l2tpd.service')], { encoding: 'utf8', timeout: 60000 });
  t.match(`${bad.stdout}${bad.stderr}`, /Failed to parse service type/, 'a bad Type= is reported');
});

t.test('install-service.sh with DESTDIR stages the whole install', { skip: built ? false : 'dist/ not built' }, async (t) => {
  const dest = shortDir(t);
  const run = () => spawnSync('bash', [path.join(ROOT, 'scripts', 'install-service.sh')], {
    encoding: 'utf8', timeout: 120000, env: { ...process.env, DESTDIR: dest },
  });
  const r = run();
  t.equal(r.status, 0, `exit 0 ${r.stderr}`);
  t.match(r.stdout, /DESTDIR set: skipped creating user l2tpd/);
  const p = (rel: string) => path.join(dest, rel);
  for (const f of ['opt/l2tpd/dist/daemon/main.js', 'opt/l2tpd/dist/cli/main.js', 'opt/l2tpd/package.json',
    'opt/l2tpd/native-bindings/build/Release/l2tpd_native.node', 'opt/l2tpd/node_modules/prom-client/package.json',
    'opt/l2tpd/node_modules/pino/package.json', 'opt/l2tpd/node_modules/netlink/package.json',
    'opt/l2tpd/node_modules/commander/package.json', 'etc/systemd/system/l2tpd.service',
    'etc/systemd/system/l2tpd.socket', 'etc/l2tpd/l2tpd.json', 'etc/l2tpd/l2tpd.json.example']) {
    t.ok(existsSync(p(f)), f);
  }
  t.notOk(existsSync(p('opt/l2tpd/node_modules/tap')), 'no devDependencies');
  t.notOk(existsSync(p('opt/l2tpd/node_modules/typescript')), 'no typescript');
  t.equal(statSync(p('opt/l2tpd/dist/daemon/main.js')).mode & 0o111, 0o111, 'l2tpd executable');
  t.equal(readlinkSync(p('usr/local/bin/l2tpd')), '/opt/l2tpd/dist/daemon/main.js');
  t.equal(readlinkSync(p('usr/local/bin/l2tpctl')), '/opt/l2tpd/dist/cli/main.js');
  const unit = readFileSync(p('etc/systemd/system/l2tpd.service'), 'utf8');
  t.match(unit, new RegExp(`^ExecStart=${process.execPath.replace(/[.]/g, '\\.')} /opt/l2tpd/dist/daemon/main\\.js`, 'm'), 'ExecStart uses this node');
  t.same(validateConfig(JSON.parse(readFileSync(p('etc/l2tpd/l2tpd.json'), 'utf8'))), { tunnels: [], sessions: [] }, 'empty valid config');
  const example = validateConfig(JSON.parse(readFileSync(p('etc/l2tpd/l2tpd.json.example'), 'utf8')));
  t.equal(example.sessions.length, 1, 'example config is valid');
  t.equal(statSync(p('etc/l2tpd')).mode & 0o777, 0o750, '/etc/l2tpd 0750');
  t.equal(statSync(p('etc/l2tpd/l2tpd.json')).mode & 0o777, 0o640, 'config 0640');

  // The installed tree runs on its own.
  const v = spawnSync(process.execPath, [p('opt/l2tpd/dist/daemon/main.js'), '--version'], { encoding: 'utf8', cwd: os.tmpdir() });
  t.equal(v.stdout.trim(), '0.1.0', 'installed l2tpd --version');
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(p('opt/l2tpd/dist/native/index.js'))}); require(${JSON.stringify(p('opt/l2tpd/dist/metrics/index.js'))})`],
    { encoding: 'utf8', cwd: os.tmpdir() });
  t.equal(load.status, 0, `installed addon and prom-client load ${load.stderr}`);

  // Re-install (upgrade): an existing config is kept, not overwritten.
  writeFileSync(p('etc/l2tpd/l2tpd.json'), '{"tunnels":[],"sessions":[]}\n');
  const again = run();
  t.equal(again.status, 0, 'reinstall exits 0');
  t.match(again.stdout, /kept existing \/etc\/l2tpd\/l2tpd\.json/);
  t.equal(readFileSync(p('etc/l2tpd/l2tpd.json'), 'utf8'), '{"tunnels":[],"sessions":[]}\n', 'config untouched');
  t.same(readdirSync(p('opt')), ['l2tpd'], 'no staging leftovers');
});
