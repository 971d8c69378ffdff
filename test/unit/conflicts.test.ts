import t from 'tap';
import { ConflictError } from '../../src/control/errors.js';
import { ConfigIndex } from '../../src/control/conflicts.js';
import { normalizeSession, normalizeTunnel } from '../../src/control/validate.js';

// The daemon keeps one ConfigIndex and changes it entry by entry: after any sequence of adds and
// deletes it must refuse and accept exactly what an index built from scratch would.

const tunnel = (id: number, encap = 'udp', port = 5000 + id) =>
  normalizeTunnel({ tunnel_id: id, peer_tunnel_id: id, encap, local: '192.0.2.1', remote: '192.0.2.2', ...(encap === 'udp' ? { udp_sport: port, udp_dport: 1701 } : {}) });
/** An encap ip tunnel on 192.0.2.1 (they all share one socket) with outer-header words. */
const ipTunnel = (id: number, words: Record<string, unknown> = {}) =>
  normalizeTunnel({ tunnel_id: id, peer_tunnel_id: id, encap: 'ip', local: '192.0.2.1', remote: '198.51.100.2', ...words });
const session = (tid: number, sid: number, extra: Record<string, unknown> = {}) =>
  normalizeSession({ tunnel_id: tid, session_id: sid, peer_session_id: sid, ...extra });

function refusalOf(fn: () => void): ConflictError | undefined {
  try { fn(); return undefined; } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    return err;
  }
}

function refusal(fn: () => void): { status: number; field?: string } | undefined {
  const err = refusalOf(fn);
  return err && { status: err.status, field: err.field };
}

t.test('an index changed entry by entry checks like one built from its config', async (t) => {
  const index = new ConfigIndex();
  const add = (x: ReturnType<typeof tunnel>) => { index.checkAddTunnel(x); index.addTunnel(x); };
  const addS = (x: ReturnType<typeof session>) => { index.checkAddSession(x); index.addSession(x); };
  add(tunnel(1)); add(tunnel(2)); add(tunnel(3, 'ip')); add(tunnel(4, 'ip'));
  addS(session(1, 10, { name: 'pw10', bridge: 'br0' }));
  addS(session(1, 11));
  addS(session(3, 30));

  const probes: Array<[string, (x: ConfigIndex) => void, string]> = [
    ['same tunnel id', (x) => x.checkAddTunnel(tunnel(1, 'udp', 6000)), 'tunnel_id'],
    ['same local port', (x) => x.checkAddTunnel(tunnel(9, 'udp', 5001)), 'udp_sport'],
    ['other ttl on a shared socket', (x) => x.checkAddTunnel(ipTunnel(9, { ttl: 5 })), 'ttl'],
    ['other tos on a shared socket', (x) => x.checkAddTunnel(ipTunnel(9, { tos: 8 })), 'tos'],
    ['same session', (x) => x.checkAddSession(session(1, 11)), 'session_id'],
    ['same name', (x) => x.checkAddSession(session(2, 20, { name: 'pw10' })), 'name'],
    ['name of a bridge in use', (x) => x.checkAddSession(session(2, 21, { name: 'br0' })), 'name'],
    ['bridge that is a session interface', (x) => x.checkAddSession(session(2, 22, { bridge: 'pw10' })), 'bridge'],
    ['IP session id taken on the host', (x) => x.checkAddSession(session(4, 30)), 'session_id'],
    ['no such tunnel', (x) => x.checkAddSession(session(7, 70)), 'tunnel_id'],
    ['tunnel with sessions', (x) => x.checkDelTunnel(1), 'tunnel_id'],
    ['no such session', (x) => x.checkDelSession(1, 99), 'session_id'],
  ];
  const rebuilt = ConfigIndex.of(index.toConfig());
  for (const [name, probe, field] of probes) {
    t.equal(refusal(() => probe(index))?.field, field, `refused: ${name}`);
    t.same(refusal(() => probe(index)), refusal(() => probe(rebuilt)), `as a rebuilt index: ${name}`);
  }
  t.same(rebuilt.toConfig(), index.toConfig(), 'same entries in file order');

  // Deleting frees what the entry held: its name, bridge use, host-wide id, port.
  index.delSession(1, 10);
  t.equal(refusal(() => index.checkAddSession(session(2, 20, { name: 'pw10' }))), undefined, 'name free again');
  t.equal(refusal(() => index.checkAddSession(session(2, 21, { name: 'br0' }))), undefined, 'bridge name free again');
  t.notOk(index.isUsed('br0'));
  index.delSession(3, 30);
  addS(session(3, 31));
  t.equal(refusal(() => index.checkAddSession(session(4, 30))), undefined, 'IP session id free again');
  index.delSession(1, 11);
  t.equal(refusal(() => index.checkDelTunnel(1)), undefined, 'a tunnel without sessions may go');
  index.delTunnel(1);
  t.equal(refusal(() => index.checkAddTunnel(tunnel(9, 'udp', 5001))), undefined, 'port free again');
  t.same(index.toConfig().tunnels.map((x) => x.tunnel_id), [2, 3, 4]);
  t.same(index.toConfig().sessions.map((x) => [x.tunnel_id, x.session_id]), [[3, 31]]);

  // What the changed index accepts, a rebuilt one accepts too, and vice versa.
  const again = ConfigIndex.of(index.toConfig());
  for (const x of [session(2, 20, { name: 'pw10' }), session(3, 31), session(3, 32, { bridge: 'br0' })]) {
    t.same(refusal(() => index.checkAddSession(x)), refusal(() => again.checkAddSession(x)), `session ${x.tunnel_id}/${x.session_id}`);
  }
  t.same(again.toConfig(), index.toConfig());
});

t.test('tunnels sharing a socket: checked against those still on it', async (t) => {
  const index = new ConfigIndex();
  const add = (x: ReturnType<typeof tunnel>) => { index.checkAddTunnel(x); index.addTunnel(x); };
  add(ipTunnel(1, { ttl: 9 })); add(ipTunnel(2, { ttl: 9 }));
  const err = refusalOf(() => index.checkAddTunnel(ipTunnel(3, { ttl: 10 })));
  t.equal(err?.status, 409);
  t.match(err?.message, /^ttl 10: tunnel [12] shares the encap ip socket on 192\.0\.2\.1 and has ttl 9; tunnels on one local address must agree on it$/);
  index.delTunnel(1);
  t.equal(refusal(() => index.checkAddTunnel(ipTunnel(3, { ttl: 10 })))?.field, 'ttl', 'the tunnel left on the socket still holds it');
  t.equal(refusal(() => index.checkAddTunnel(ipTunnel(3, { ttl: 9 }))), undefined, 'the same ttl: accepted');
  t.equal(refusal(() => index.checkAddTunnel(normalizeTunnel({ ...ipTunnel(3), local: '192.0.2.9', ttl: 10 }))), undefined,
    'another local address: another socket');
  index.delTunnel(2);
  t.equal(refusal(() => index.checkAddTunnel(ipTunnel(3, { ttl: 10 }))), undefined, 'the socket is gone with its last tunnel');
});
