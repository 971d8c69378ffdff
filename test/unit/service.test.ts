/**
 * The systemd units pass `systemd-analyze verify` with no warnings (run on copies whose
 * ExecStart points at this checkout's dist/ and this node, since verify needs the binary).
 * What l2tpd-install-service stages from an installed package: test/integration/package.test.ts.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
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
    .replace(/\/usr\/lib\/node_modules\/l2tpd\//g, `${ROOT}/`);
}

t.test('l2tpd.service declares the service contract', async (t) => {
  const unit = readFileSync(UNIT, 'utf8');
  const has = (line: string) => t.match(unit, new RegExp(`^${line.replace(/[$]/g, '\\$')}$`, 'm'), line);
  has('Type=notify');
  has('NotifyAccess=main');
  has('ExecReload=/usr/bin/node /usr/lib/node_modules/l2tpd/dist/cli/main.js --socket /run/l2tpd/l2tpd.sock reload');
  has('WatchdogSec=30s');
  has('SyslogIdentifier=l2tpd');
  has('User=l2tpd');
  has('AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW');
  has('CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW');
  has('NoNewPrivileges=yes');
  has('RuntimeDirectory=l2tpd');
  has('StateDirectory=l2tpd');
  has('ConfigurationDirectory=l2tpd');
  has('DeviceAllow=/dev/net/tun rw');
  has('RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK');
  t.match(unit, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/node_modules\/l2tpd\/dist\/daemon\/main\.js --config \/etc\/l2tpd\/l2tpd\.json --socket \/run\/l2tpd\/l2tpd\.sock /m);
  t.notMatch(unit, /^PrivateDevices=yes/m, 'PrivateDevices would hide /dev/net/tun');
  t.notMatch(unit, /^MemoryDenyWriteExecute=yes/m, 'V8 needs W+X memory');
  t.notMatch(unit, /^PrivateNetwork=yes/m);
  const sock = readFileSync(SOCKET, 'utf8');
  t.match(sock, /^ListenStream=\/run\/l2tpd\/l2tpd\.sock$/m, 'socket unit listens where --socket points');
  t.match(sock, /^SocketMode=0660$/m);
  const socketArg = (line: string) => / --socket (\S+)/.exec(unit.split('\n').find((l) => l.startsWith(line)) ?? '')?.[1];
  t.equal(socketArg('ExecReload='), socketArg('ExecStart='), 'ExecReload talks to the socket ExecStart serves');
});

t.test('l2tpd.tmpfiles creates the socket directory as the service owns it', async (t) => {
  const unit = readFileSync(UNIT, 'utf8');
  const setting = (text: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(text)?.[1];
  const entries = readFileSync(path.join(ROOT, 'systemd', 'l2tpd.tmpfiles'), 'utf8').split('\n')
    .filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.trim().split(/\s+/));
  const listen = setting(readFileSync(SOCKET, 'utf8'), 'ListenStream')!;
  t.same(entries, [['d', path.dirname(listen), setting(unit, 'RuntimeDirectoryMode'), setting(unit, 'User'), setting(unit, 'Group'), '-']],
    "one directory: the socket's, with the service's RuntimeDirectoryMode, User and Group");
  t.equal(path.dirname(listen), `/run/${setting(unit, 'RuntimeDirectory')}`, 'which is the RuntimeDirectory');
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
