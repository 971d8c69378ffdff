/**
 * The config file and mistakes around it. On reload (SIGHUP or `l2tpctl reload`), an empty or
 * vanished file is refused and the running state kept; removing everything takes an explicit
 * empty config. At start-up, a missing file still means "start empty", and temp files a killed
 * writer left next to the config are removed. Signals that arrive while the config is being
 * applied wait for it: one reload after it, however many SIGHUPs; a SIGTERM stops cleanly. An
 * add the file cannot take, or whose session cannot start, leaves the file and the running state
 * as they were.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ipLink, netnsUnavailable, waitUntil } from '../helpers/netns.js';
import { DAEMON, Sites, UNDERLAY, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable();

/** Site A's daemon running with tunnel 1. */
async function siteWithTunnel(t: Test): Promise<{ sites: Sites; a: Daemon }> {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  sites.ok(sites.a, ['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', UNDERLAY.a4, 'remote', UNDERLAY.b4,
    'udp_sport', '1701', 'udp_dport', '1701']);
  return { sites, a: sites.a };
}

t.test('an empty or vanished file on reload is refused; an explicit empty config removes everything', { skip }, async (t) => {
  const { sites, a } = await siteWithTunnel(t);
  sites.ok(a, ['add', 'session', 'name', 'pwkeep', 'tunnel_id', '1', 'session_id', '1', 'peer_session_id', '1', 'bridge', 'brkeep']);
  const running = () => sites.json<Array<{ interface: string; state: string }>>(a, ['show', 'session']);

  // `: > l2tpd.json; kill -HUP`
  writeFileSync(a.config, '');
  a.proc!.kill('SIGHUP');
  t.ok(await waitUntil(() => a.log.some((l) => l.includes('reload refused')), 10000), 'SIGHUP with an empty file: refused');
  t.ok(a.log.some((l) => l.includes('reload refused') && l.includes(`${a.config}: empty; reload refused, running state kept`)), 'the log says why');
  t.match(running(), [{ interface: 'pwkeep', state: 'up' }], 'the session still runs');
  t.ok(ipLink(a.ns, 'pwkeep') && ipLink(a.ns, 'brkeep'), 'its tap and bridge are still there');

  const emptied = sites.cli(a, ['reload']);
  t.equal(emptied.status, 1, 'l2tpctl reload of an empty file: exit 1');
  t.equal(emptied.stderr.trim(), `l2tpctl: refused by l2tpd: ${a.config}: empty; reload refused, running state kept (to remove everything, write {"tunnels": [], "sessions": []})`);

  rmSync(a.config);
  const vanished = sites.cli(a, ['reload']);
  t.equal(vanished.status, 1, 'l2tpctl reload of a vanished file: exit 1');
  t.match(vanished.stderr, `${a.config}: missing; reload refused, running state kept`);
  t.match(running(), [{ interface: 'pwkeep', state: 'up' }], 'the session still runs');

  // The next change through the API writes the whole running state back.
  sites.ok(a, ['add', 'session', 'name', 'pwmore', 'tunnel_id', '1', 'session_id', '2', 'peer_session_id', '2']);
  t.match(sites.configFile(a), { sessions: [{ name: 'pwkeep' }, { name: 'pwmore' }] }, 'the file holds what runs again');

  writeFileSync(a.config, '{"tunnels": [], "sessions": []}\n');
  const all = sites.cli(a, ['-j', 'reload']);
  t.equal(all.status, 0, 'an explicit empty config is applied');
  t.same(JSON.parse(all.stdout), { added: 0, removed: 3, changed: 0 }, 'removing the tunnel and both sessions');
  t.same(running(), [], 'nothing runs');
  t.notOk(ipLink(a.ns, 'pwkeep') || ipLink(a.ns, 'brkeep'), 'the tap and bridge l2tpd made are gone');
});

t.test('an add the config file cannot take, or whose entry cannot start, changes nothing', { skip }, async (t) => {
  const { sites, a } = await siteWithTunnel(t);
  sites.ok(a, ['add', 'session', 'name', 'pwkeep', 'tunnel_id', '1', 'session_id', '1', 'peer_session_id', '1']);
  const before = readFileSync(a.config, 'utf8');
  const sessions = () => sites.json<Array<{ interface: string }>>(a, ['show', 'session']).map((s) => s.interface);

  // A write that fails (its temp path taken by a directory) takes the started session back.
  const tmp = `${a.config}.tmp-${a.proc!.pid}`;
  mkdirSync(tmp);
  const unwritten = sites.cli(a, ['add', 'session', 'name', 'pwnofile', 'tunnel_id', '1', 'session_id', '2', 'peer_session_id', '2', 'bridge', 'brnofile']);
  rmSync(tmp, { recursive: true });
  t.equal(unwritten.status, 1, 'refused');
  t.match(unwritten.stderr, /EISDIR/, 'saying why');
  t.same(sessions(), ['pwkeep'], 'the session is not running');
  t.notOk(ipLink(a.ns, 'pwnofile') || ipLink(a.ns, 'brnofile'), 'its tap and bridge are gone');
  t.equal(readFileSync(a.config, 'utf8'), before, 'the file unchanged');

  // A session that cannot start (its name is an interface l2tpd did not make) leaves the file as it was.
  const taken = sites.cli(a, ['add', 'session', 'name', 'ul0', 'tunnel_id', '1', 'session_id', '3', 'peer_session_id', '3']);
  t.equal(taken.status, 1, 'refused');
  t.match(taken.stderr, 'interface ul0 already exists and was not created by l2tpd', 'saying why');
  t.same(sessions(), ['pwkeep'], 'nothing more runs');
  t.equal(readFileSync(a.config, 'utf8'), before, 'the file as it was');
  t.same(readdirSync(path.dirname(a.config)).filter((n) => n.includes('.tmp-')), [], 'no temp file left');

  // And the next add works.
  sites.ok(a, ['add', 'session', 'name', 'pwnext', 'tunnel_id', '1', 'session_id', '4', 'peer_session_id', '4']);
  t.match(sites.configFile(a), { sessions: [{ name: 'pwkeep' }, { name: 'pwnext' }] }, 'the file holds what runs');
});

t.test('start-up removes the temp files a killed writer left', { skip }, async (t) => {
  const { sites, a } = await siteWithTunnel(t);
  await sites.stop(a);
  const dir = path.dirname(a.config);
  // What kill -9 between open and rename leaves: a partial temp file named after the writer's pid.
  const leftovers = ['l2tpd.json.tmp-4194304', 'l2tpd.json.tmp-4194305'];
  for (const name of leftovers) writeFileSync(path.join(dir, name), '{"tunnels": [{"tunnel_id": 1, "peer_tu');
  await sites.start(a);
  t.same(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp file left');
  t.ok(existsSync(a.config), 'the config file stays');
  t.equal(sites.json<unknown[]>(a, ['show', 'tunnel']).length, 1, 'and was loaded');
  t.ok(await waitUntil(() => a.log.some((l) => l.includes('removed a config temp file')), 5000), 'logged');
});

t.test('signals while the config is applied: SIGHUP reloads once after it, SIGTERM stops cleanly after it', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const a = sites.a;
  mkdirSync(a.dir, { recursive: true });
  // Enough sessions (a tap each) that applying them takes a while on any machine.
  const SESSIONS = 60;
  writeFileSync(a.config, JSON.stringify({
    tunnels: [{ tunnel_id: 1, peer_tunnel_id: 1, encap: 'udp', local: UNDERLAY.a4, remote: UNDERLAY.b4, udp_sport: 1701, udp_dport: 1701 }],
    sessions: Array.from({ length: SESSIONS }, (_, i) => ({ tunnel_id: 1, session_id: i + 1, peer_session_id: i + 1, name: `pwsig${i}` })),
  }));
  /** Start l2tpd, send `signals` as soon as its control socket is there (handlers are in place, start runs). */
  const startAndSignal = async (signals: NodeJS.Signals[]) => {
    a.log = [];
    const proc = spawn('ip', ['netns', 'exec', a.ns, process.execPath, DAEMON, '--config', a.config, '--socket', a.socket,
      '--metrics-listen', 'off', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    a.proc = proc;
    const collect = (b: Buffer) => { a.log.push(...b.toString().split('\n').filter(Boolean)); };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    t.ok(await waitUntil(() => existsSync(a.socket) || proc.exitCode !== null, 30000, 5), 'the control socket is there');
    t.notOk(a.log.some((l) => l.includes('configuration applied')), 'before the config is applied');
    for (const signal of signals) proc.kill(signal);
    return exited;
  };
  const at = (msg: string) => a.log.findIndex((l) => l.includes(msg));

  void startAndSignal(['SIGHUP', 'SIGHUP']);
  t.ok(await waitUntil(() => at('SIGHUP: reloaded') >= 0, 60000), 'reloaded');
  t.ok(at('configuration applied') < at('SIGHUP: reloaded'), 'after the config was applied');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(a.log.filter((l) => l.includes('SIGHUP: reloaded')).length, 1, 'once');
  t.equal(a.proc!.exitCode, null, 'and l2tpd runs on');
  t.equal(await sites.stop(a), 0, 'stopped');

  const exit = await startAndSignal(['SIGTERM']);
  t.equal(exit, 0, 'SIGTERM during start: a clean exit');
  a.proc = null;
  t.ok(at('configuration applied') >= 0 && at('configuration applied') < at('shutting down'), 'once the config was applied');
  const file = JSON.parse(readFileSync(path.join(a.dir, 'tx-sequence.json'), 'utf8')) as { clean: boolean; sessions: object };
  t.match(file, { clean: true }, 'the send numbering was saved as a clean stop');
  t.equal(Object.keys(file.sessions).length, SESSIONS, 'for every session');
});
