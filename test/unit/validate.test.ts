import t from 'tap';
import { ConfigError, ConflictError } from '../../src/control/errors.js';
import {
  checkAddSession,
  checkAddTunnel,
  checkDelSession,
  checkDelTunnel,
  normalizeSession,
  normalizeTunnel,
  validateConfig,
  validateToIndex,
  validationSteps,
  VALIDATION_STEP,
} from '../../src/control/validate.js';
import type { Config } from '../../src/control/model.js';

const T4 = { tunnel_id: 3000, peer_tunnel_id: 4000, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000 };
const T6 = { tunnel_id: 3001, peer_tunnel_id: 4001, local: '2001:db8::1', remote: '2001:db8::2', udp_sport: 5001, udp_dport: 6001 };
const TIP = { tunnel_id: 3002, peer_tunnel_id: 4002, encap: 'ip', local: '192.0.2.1', remote: '198.51.100.2' };
const S = { tunnel_id: 3000, session_id: 1000, peer_session_id: 2000 };

/** Assert validateConfig accepts `input` and keeps these tunnels and (tunnel_id, session_id) sessions, in order. */
function accepts(tt: tap.Test, input: unknown, tunnels: number[], sessions: Array<[number, number]>, what: string): void {
  let cfg: Config | undefined;
  tt.doesNotThrow(() => { cfg = validateConfig(input); }, `accepted: ${what}`);
  tt.same(cfg && {
    tunnels: cfg.tunnels.map((x) => x.tunnel_id),
    sessions: cfg.sessions.map((x) => [x.tunnel_id, x.session_id]),
  }, { tunnels, sessions }, `${what}: every tunnel and session kept`);
}

/** Assert a ConfigError naming field, value and allowed, with message matching `re`. */
function refuses(tt: tap.Test, fn: () => unknown, field: string, re: RegExp): void {
  try {
    fn();
    tt.fail(`expected ConfigError for ${field}`);
  } catch (err) {
    tt.ok(err instanceof ConfigError, `ConfigError for ${field}`);
    const e = err as ConfigError;
    tt.equal(e.field, field, `field ${field}`);
    tt.match(e.message, re, e.message);
    tt.ok(e.allowed.length > 0, 'allowed described');
  }
}

t.test('tunnel: defaults and normalisation', async (t) => {
  t.same(normalizeTunnel(T4), { ...T4, encap: 'udp', udp_csum: 'off' });
  t.same(normalizeTunnel({ ...T6 }), { ...T6, encap: 'udp', udp6_csum_tx: 'on', udp6_csum_rx: 'on' });
  t.same(normalizeTunnel(TIP), TIP, 'ip encap: no ports, no checksum options');
  // numeric strings as the CLI sends them, case-insensitive enums, booleans for on/off
  t.same(
    normalizeTunnel({ tunnel_id: '3000', peer_tunnel_id: '4000', encap: 'UDP', local: '192.0.2.1', remote: '192.0.2.2',
      udp_sport: '5000', udp_dport: '6000', udp_csum: true }),
    { ...T4, encap: 'udp', udp_csum: 'on' });
  t.equal(normalizeTunnel({ ...T6, local: '2001:DB8:0::1' }).local, '2001:db8::1', 'IPv6 canonical form');
  t.same(normalizeTunnel({ ...T6, udp6_csum_tx: 'off', udp6_csum_rx: 'off' }).udp6_csum_tx, 'off');
  t.equal(normalizeTunnel({ ...T4, tunnel_id: 4294967295 }).tunnel_id, 4294967295);
});

t.test('tunnel: every refusal names field, value and what is allowed', async (t) => {
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: 0 }), 'tunnel_id', /^tunnel_id 0: expected an integer 1\.\.4294967295$/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: 4294967296 }), 'tunnel_id', /4294967296: expected an integer 1\.\.4294967295/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: '-1' }), 'tunnel_id', /tunnel_id -1: expected/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: 1.5 }), 'tunnel_id', /1\.5/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: '0x10' }), 'tunnel_id', /0x10/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnel_id: true }), 'tunnel_id', /true/);
  refuses(t, () => normalizeTunnel({ ...T4, peer_tunnel_id: 0 }), 'peer_tunnel_id', /peer_tunnel_id 0/);
  const { tunnel_id: _a, ...noTid } = T4;
  refuses(t, () => normalizeTunnel(noTid), 'tunnel_id', /^tunnel_id: missing; expected an integer/);
  const { local: _b, ...noLocal } = T4;
  refuses(t, () => normalizeTunnel(noLocal), 'local', /local: missing/);
  const { remote: _c, ...noRemote } = T4;
  refuses(t, () => normalizeTunnel(noRemote), 'remote', /remote: missing/);
  refuses(t, () => normalizeTunnel({ ...T4, encap: 'gre' }), 'encap', /^encap gre: expected ip or udp$/);
  refuses(t, () => normalizeTunnel({ ...T4, local: '192.0.2' }), 'local', /local 192\.0\.2: expected an IPv4 or IPv6 address/);
  refuses(t, () => normalizeTunnel({ ...T4, local: 'host.example' }), 'local', /host\.example/);
  refuses(t, () => normalizeTunnel({ ...T4, local: '0.0.0.0' }), 'local', /wildcard/);
  refuses(t, () => normalizeTunnel({ ...T6, remote: '::' }), 'remote', /wildcard/);
  refuses(t, () => normalizeTunnel({ ...T6, local: 'fe80::1%eth0' }), 'local', /zone/);
  refuses(t, () => normalizeTunnel({ ...T4, remote: '2001:db8::2' }), 'remote', /remote 2001:db8::2: expected an IPv4 address \(same family as local 192\.0\.2\.1\)/);
  refuses(t, () => normalizeTunnel({ ...T4, udp_sport: 0 }), 'udp_sport', /udp_sport 0: expected an integer 1\.\.65535/);
  refuses(t, () => normalizeTunnel({ ...T4, udp_dport: 65536 }), 'udp_dport', /65536/);
  const { udp_sport: _d, ...noSport } = T4;
  refuses(t, () => normalizeTunnel(noSport), 'udp_sport', /udp_sport: missing.*required with encap udp/);
  refuses(t, () => normalizeTunnel({ ...TIP, udp_sport: 5000 }), 'udp_sport', /only applies to encap udp/);
  refuses(t, () => normalizeTunnel({ ...TIP, udp_csum: 'on' }), 'udp_csum', /only applies to encap udp/);
  refuses(t, () => normalizeTunnel({ ...T4, udp_csum: 'yes' }), 'udp_csum', /udp_csum yes: expected on or off/);
  refuses(t, () => normalizeTunnel({ ...T6, udp_csum: 'on' }), 'udp_csum', /only applies to UDP over IPv4/);
  refuses(t, () => normalizeTunnel({ ...T4, udp6_csum_tx: 'off' }), 'udp6_csum_tx', /only applies to UDP over IPv6/);
  refuses(t, () => normalizeTunnel({ ...T6, udp6_csum_rx: 'maybe' }), 'udp6_csum_rx', /expected on or off/);
  refuses(t, () => normalizeTunnel({ ...T4, tunnl_id: 5 }), 'tunnl_id', /unknown field "tunnl_id" in tunnel; expected one of: tunnel_id, /);
  // Addresses a tunnel cannot have: one peer, unicast, one family as written.
  refuses(t, () => normalizeTunnel({ ...T6, local: '::ffff:192.0.2.1' }), 'local',
    /^local ::ffff:192\.0\.2\.1: an IPv4-mapped IPv6 address; write the IPv4 address 192\.0\.2\.1 instead$/);
  refuses(t, () => normalizeTunnel({ ...T6, remote: '::FFFF:C000:0202' }), 'remote', /IPv4-mapped.*192\.0\.2\.2/);
  refuses(t, () => normalizeTunnel({ ...T4, remote: '224.0.0.5' }), 'remote', /^remote 224\.0\.0\.5: a multicast address; expected a unicast address$/);
  refuses(t, () => normalizeTunnel({ ...T4, local: '239.255.255.250' }), 'local', /multicast/);
  refuses(t, () => normalizeTunnel({ ...T6, remote: 'ff02::1' }), 'remote', /ff02::1: a multicast address/);
  refuses(t, () => normalizeTunnel({ ...T4, remote: '255.255.255.255' }), 'remote', /the broadcast address/);
  refuses(t, () => normalizeTunnel({ ...T4, remote: T4.local }), 'remote', /^remote 192\.0\.2\.1: same as local; expected the peer's address$/);
  refuses(t, () => normalizeTunnel({ ...T6, remote: '2001:DB8::1' }), 'remote', /same as local/);
  t.equal(normalizeTunnel({ ...T4, remote: '223.255.255.254' }).remote, '223.255.255.254', 'the last unicast /8 below multicast is fine');
  t.equal(normalizeTunnel({ ...T6, remote: '::ffff:1:2:3' }).remote, '::ffff:1:2:3', 'only the ::ffff:a.b.c.d form is IPv4-mapped');
  refuses(t, () => normalizeTunnel(null), 'tunnel', /expected an object/);
  refuses(t, () => normalizeTunnel([1]), 'tunnel', /expected an object/);
});

t.test('session: defaults and normalisation', async (t) => {
  t.same(normalizeSession(S), { ...S, l2spec_type: 'default', seq: 'none', offset: 0, peer_offset: 0, reorder_timeout: 0 });
  const full = normalizeSession({
    ...S, name: 'l2tpeth%d', cookie: '0123ABCD', peer_cookie: '0123456789abcdef', l2spec_type: 'Default', seq: 'both',
    offset: '256', peer_offset: 8, reorder_timeout: '60000', mtu: '16000', bridge: 'br0', vlan: '4094', dev: 'eth1',
  });
  t.same(full, {
    ...S, name: 'l2tpeth%d', cookie: '0123abcd', peer_cookie: '0123456789abcdef', l2spec_type: 'default', seq: 'both',
    offset: 256, peer_offset: 8, reorder_timeout: 60000, mtu: 16000, bridge: 'br0', vlan: 4094, dev: 'eth1',
  });
  t.equal(normalizeSession({ ...S, name: 'pw-site_b.1' }).name, 'pw-site_b.1');
  t.equal(normalizeSession({ ...S, mtu: 68 }).mtu, 68);
});

t.test('session: every refusal names field, value and what is allowed', async (t) => {
  for (const seq of ['send', 'recv', 'both']) {
    refuses(t, () => normalizeSession({ ...S, l2spec_type: 'none', seq }), 'seq',
      new RegExp(`^seq ${seq}: expected none when l2spec_type is none \\(sequence numbers need l2spec_type default\\)$`));
  }
  t.equal(normalizeSession({ ...S, l2spec_type: 'none', seq: 'none' }).seq, 'none', 'seq none with l2spec none is fine');
  for (const f of ['tunnel_id', 'session_id', 'peer_session_id']) {
    refuses(t, () => normalizeSession({ ...S, [f]: 0 }), f, new RegExp(`^${f} 0: expected an integer 1\\.\\.4294967295$`));
    const rest: Record<string, unknown> = { ...S };
    delete rest[f];
    refuses(t, () => normalizeSession(rest), f, new RegExp(`^${f}: missing`));
  }
  refuses(t, () => normalizeSession({ ...S, cookie: '0123abc' }), 'cookie', /^cookie 0123abc: expected 8 or 16 hex digits$/);
  refuses(t, () => normalizeSession({ ...S, cookie: '0123abcdef' }), 'cookie', /10|0123abcdef/);
  refuses(t, () => normalizeSession({ ...S, peer_cookie: 'zzzzzzzz' }), 'peer_cookie', /peer_cookie zzzzzzzz: expected 8 or 16 hex digits/);
  refuses(t, () => normalizeSession({ ...S, l2spec_type: 'cisco' }), 'l2spec_type', /l2spec_type cisco: expected none or default/);
  refuses(t, () => normalizeSession({ ...S, seq: 'all' }), 'seq', /seq all: expected none or send or recv or both/);
  t.equal(normalizeSession({ ...S, seq: 'send', seq_mirror: 'off' }).seq_mirror, 'off', 'seq_mirror off pins sending');
  t.notOk('seq_mirror' in normalizeSession(S), 'seq_mirror is kept only when given (on, as Linux, without it)');
  refuses(t, () => normalizeSession({ ...S, seq_mirror: 'yes' }), 'seq_mirror', /seq_mirror yes: expected on or off/);
  refuses(t, () => normalizeSession({ ...S, offset: 257 }), 'offset', /offset 257: expected an integer 0\.\.256/);
  refuses(t, () => normalizeSession({ ...S, peer_offset: -1 }), 'peer_offset', /peer_offset -1/);
  refuses(t, () => normalizeSession({ ...S, reorder_timeout: 60001 }), 'reorder_timeout', /reorder_timeout 60001: expected an integer 0\.\.60000/);
  refuses(t, () => normalizeSession({ ...S, mtu: 67 }), 'mtu', /mtu 67: expected an integer 68\.\.16000/);
  refuses(t, () => normalizeSession({ ...S, mtu: 16001 }), 'mtu', /16001/);
  refuses(t, () => normalizeSession({ ...S, name: 'a-very-long-name' }), 'name', /name a-very-long-name: expected an interface name of 1\.\.15 bytes/);
  refuses(t, () => normalizeSession({ ...S, name: '' }), 'name', /name "": expected/);
  refuses(t, () => normalizeSession({ ...S, name: 'a/b' }), 'name', /a\/b/);
  refuses(t, () => normalizeSession({ ...S, name: 'a b' }), 'name', /"a b"/);
  refuses(t, () => normalizeSession({ ...S, name: 'a:1' }), 'name', /a:1/);
  refuses(t, () => normalizeSession({ ...S, name: '..' }), 'name', /\.\./);
  refuses(t, () => normalizeSession({ ...S, name: 'pw%d%d' }), 'name', /pw%d%d/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw%s' }), 'name', /pw%s/);
  refuses(t, () => normalizeSession({ ...S, bridge: 'br%d' }), 'bridge', /bridge br%d: expected an interface name/);
  // Interface names as the kernel takes them, and no control characters (netlink cuts at NUL).
  refuses(t, () => normalizeSession({ ...S, bridge: 'b\u0000r' }), 'bridge', /^bridge "b\\u0000r": contains a control character; expected an interface name/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw\u001b[31m' }), 'name', /^name "pw\\u001b\[31m": contains a control character/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw\u007f' }), 'name', /contains a control character/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw\u009b1' }), 'name', /^name "pw\\u009b1": contains a control character/);
  refuses(t, () => normalizeSession({ ...S, dev: 'eth\n1', vlan: 5 }), 'dev', /control character/);
  refuses(t, () => normalizeSession({ ...S, name: 'a\tb' }), 'name', /^name "a\\tb": contains a control character/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw\u00a0' }), 'name', /^name "pw\u00a0": expected an interface name/);
  refuses(t, () => normalizeSession({ ...S, name: 'pw\u00e0' }), 'name', /expected an interface name/);
  refuses(t, () => normalizeSession({ ...S, bridge: '.' }), 'bridge', /^bridge \.: expected an interface name/);
  t.equal(normalizeSession({ ...S, name: 'pw\u00e9' }).name, 'pw\u00e9', 'UTF-8 the kernel takes is fine');
  refuses(t, () => normalizeSession({ ...S, vlan: 0, dev: 'eth1' }), 'vlan', /vlan 0: expected an integer 1\.\.4094/);
  refuses(t, () => normalizeSession({ ...S, vlan: 4095, dev: 'eth1' }), 'vlan', /4095/);
  refuses(t, () => normalizeSession({ ...S, vlan: 100 }), 'dev', /dev: missing; vlan 100 needs dev/);
  refuses(t, () => normalizeSession({ ...S, dev: 'eth1' }), 'vlan', /vlan: missing; dev eth1 needs vlan/);
  refuses(t, () => normalizeSession({ ...S, vlan: 1000, dev: 'enp129s0f1np1' }), 'dev', /enp129s0f1np1\.1000.*15 bytes/);
  refuses(t, () => normalizeSession({ ...S, name: 'br0', bridge: 'br0' }), 'name', /same as bridge/);
  refuses(t, () => normalizeSession({ ...S, sessionid: 1 }), 'sessionid', /unknown field "sessionid" in session/);
});

t.test('validateConfig: structure and paths', async (t) => {
  t.same(validateConfig({}), { tunnels: [], sessions: [] });
  t.same(validateConfig({ tunnels: [T4], sessions: [S] }).sessions[0].seq, 'none');
  refuses(t, () => validateConfig([]), 'config', /expected an object/);
  refuses(t, () => validateConfig({ tunnels: {} }), 'tunnels', /expected an array/);
  refuses(t, () => validateConfig({ tunnels: [], extra: 1 }), 'extra', /unknown field "extra" in config/);
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [S, S, { ...S, session_id: 7, cookie: 'x' }] }),
    'sessions[1].session_id', /^sessions\[1\]\.session_id 1000: session 1000 already exists in tunnel 3000$/);
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [S, { ...S, session_id: 7, peer_session_id: 0 }] }),
    'sessions[1].peer_session_id', /^sessions\[1\]\.peer_session_id 0: expected an integer/);
  refuses(t, () => validateConfig({ tunnels: [T4, { ...T4, bogus: 1 }] }), 'tunnels[1].bogus', /^tunnels\[1\]: unknown field "bogus"/);
});

t.test('validateConfig: cross-checks', async (t) => {
  refuses(t, () => validateConfig({ tunnels: [T4, { ...T4, udp_sport: 5999 }] }), 'tunnels[1].tunnel_id', /tunnel 3000 already exists/);
  refuses(t, () => validateConfig({ tunnels: [T4, { ...T4, tunnel_id: 9 }] }), 'tunnels[1].udp_sport',
    /local 192\.0\.2\.1 udp_sport 5000 is already used by tunnel 3000/);
  // same port on another local address is fine; IP encap tunnels may share a local address
  accepts(t, { tunnels: [T4, { ...T4, tunnel_id: 9, local: '192.0.2.9' }, TIP, { ...TIP, tunnel_id: 3003 }] },
    [3000, 9, 3002, 3003], [], 'same UDP port on another address; IP tunnels sharing a local address');
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [{ ...S, tunnel_id: 9 }] }), 'sessions[0].tunnel_id', /tunnel 9 does not exist/);
  // UDP: same session ID in two tunnels is fine; IP: unique on the host
  accepts(t, { tunnels: [T4, T6], sessions: [S, { ...S, tunnel_id: 3001 }] },
    [3000, 3001], [[3000, 1000], [3001, 1000]], 'UDP: session 1000 in two tunnels');
  refuses(t, () => validateConfig({
    tunnels: [T4, TIP, { ...TIP, tunnel_id: 3003 }],
    sessions: [S, { ...S, tunnel_id: 3002 }, { ...S, tunnel_id: 3003 }],
  }), 'sessions[2].session_id', /session_id 1000 is already used in tunnel 3002; with encap ip, session IDs must be unique on the host/);
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [{ ...S, name: 'pw0' }, { ...S, session_id: 2, name: 'pw0' }] }),
    'sessions[1].name', /interface name pw0 is already used by session 1000/);
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [{ ...S, bridge: 'pw0' }, { ...S, session_id: 2, name: 'pw0' }] }),
    'sessions[1].name', /already used as a bridge or trunk/);
  refuses(t, () => validateConfig({ tunnels: [T4], sessions: [{ ...S, name: 'brvlan5' }, { ...S, session_id: 2, vlan: 5, dev: 'eth1' }] }),
    'sessions[1].dev', /brvlan5 is the interface of session 1000/);
  // pattern names and shared bridges are fine
  accepts(t, { tunnels: [T4], sessions: [
    { ...S, name: 'l2tpeth%d', bridge: 'br0' }, { ...S, session_id: 2, name: 'l2tpeth%d', bridge: 'br0' }] },
  [3000], [[3000, 1000], [3000, 2]], 'pattern names and a shared bridge');
});

t.test('check* against a live config', async (t) => {
  const cfg: Config = validateConfig({ tunnels: [T4, TIP], sessions: [S, { ...S, session_id: 1001 }, { ...S, tunnel_id: 3002 }] });
  const conflict = (fn: () => void, status: number, re: RegExp): void => {
    try {
      fn();
      t.fail('expected ConflictError');
    } catch (err) {
      t.ok(err instanceof ConflictError);
      t.equal((err as ConflictError).status, status);
      t.match((err as Error).message, re, (err as Error).message);
    }
  };
  conflict(() => checkAddTunnel(cfg, normalizeTunnel(T4)), 409, /tunnel 3000 already exists/);
  t.doesNotThrow(() => checkAddTunnel(cfg, normalizeTunnel({ ...T4, tunnel_id: 1, udp_sport: 1 })));
  conflict(() => checkAddSession(cfg, normalizeSession({ ...S, tunnel_id: 77 })), 404, /tunnel 77 does not exist/);
  conflict(() => checkAddSession(cfg, normalizeSession(S)), 409, /session 1000 already exists in tunnel 3000/);
  conflict(() => checkDelTunnel(cfg, 3000), 409, /^tunnel 3000 still has 2 sessions; delete them first$/);
  conflict(() => checkDelTunnel(cfg, 3002), 409, /^tunnel 3002 still has 1 session; delete them first$/);
  conflict(() => checkDelTunnel(cfg, 5), 404, /tunnel 5 does not exist/);
  conflict(() => checkDelSession(cfg, 5, 1), 404, /tunnel 5 does not exist/);
  conflict(() => checkDelSession(cfg, 3000, 1), 404, /session 1 does not exist in tunnel 3000/);
  t.doesNotThrow(() => checkDelSession(cfg, 3000, 1000));
});

t.test('ConfigError and ConflictError shapes', async (t) => {
  const e = new ConfigError('tunnel_id', 0, 'an integer 1..4294967295');
  t.same(e.toJSON(), { error: 'tunnel_id 0: expected an integer 1..4294967295', field: 'tunnel_id', value: 0, allowed: 'an integer 1..4294967295' });
  t.equal(e.withPrefix('sessions[2].').message, 'sessions[2].tunnel_id 0: expected an integer 1..4294967295');
  t.equal(e.withContext('/etc/l2tpd/l2tpd.json').message, '/etc/l2tpd/l2tpd.json: tunnel_id 0: expected an integer 1..4294967295');
  const c = new ConflictError('nope');
  t.equal(c.status, 409);
  t.same(c.toJSON(), { error: 'nope' });
  t.same(new ConflictError('gone', 404, 'tunnel_id', 5).toJSON(), { error: 'gone', field: 'tunnel_id', value: 5 });
});

t.test('liveness words: hello_interval, hello_retries, peer_timeout', async (t) => {
  t.same(normalizeTunnel({ ...T4, hello_interval: '5' }), { ...T4, encap: 'udp', udp_csum: 'off', hello_interval: 5, hello_retries: 10 },
    'hello_retries defaults to 10 with hello_interval');
  t.same(normalizeTunnel({ ...TIP, hello_interval: 1, hello_retries: '2' }), { ...TIP, hello_interval: 1, hello_retries: 2 });
  t.notOk('hello_retries' in normalizeTunnel({ ...T4, hello_interval: 0 }), 'hello_interval 0 (off): no retries filled in');
  t.notOk('hello_retries' in normalizeTunnel(T4), 'no hello_interval: no retries filled in');
  refuses(t, () => normalizeTunnel({ ...T4, hello_interval: 3601 }), 'hello_interval', /^hello_interval 3601: expected an integer 0\.\.3600 \(seconds; 0 = off\)$/);
  refuses(t, () => normalizeTunnel({ ...T4, hello_retries: 3 }), 'hello_retries', /^hello_retries 3: only applies with hello_interval 1\.\.3600$/);
  refuses(t, () => normalizeTunnel({ ...T4, hello_interval: 0, hello_retries: 3 }), 'hello_retries', /only applies with hello_interval/);
  refuses(t, () => normalizeTunnel({ ...T4, hello_interval: 1, hello_retries: 0 }), 'hello_retries', /^hello_retries 0: expected an integer 1\.\.32$/);
  t.equal(normalizeSession({ ...S, peer_timeout: '30' }).peer_timeout, 30);
  t.equal(normalizeSession({ ...S, peer_timeout: 0 }).peer_timeout, 0, 'peer_timeout 0: off');
  refuses(t, () => normalizeSession({ ...S, peer_timeout: 86401 }), 'peer_timeout', /^peer_timeout 86401: expected an integer 0\.\.86400 \(seconds; 0 = off\)$/);
  refuses(t, () => normalizeSession({ ...S, peer_timeout: 1.5 }), 'peer_timeout', /expected an integer/);
});

t.test('validationSteps: pauses every VALIDATION_STEP entries, and ends as validateToIndex does', async (t) => {
  const tunnels = [{ tunnel_id: 1, peer_tunnel_id: 1, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 5000 }];
  const n = VALIDATION_STEP * 2 + 7;
  const sessions = Array.from({ length: n }, (_, i) => ({ tunnel_id: 1, session_id: i + 1, peer_session_id: i + 1 }));
  const steps = validationSteps({ tunnels, sessions });
  let pauses = 0;
  let step = steps.next();
  while (!step.done) { pauses++; step = steps.next(); }
  t.equal(pauses, 2, `${n} sessions: two pauses`);
  t.same(step.value.toConfig(), validateToIndex({ tunnels, sessions }).toConfig(), 'the same index');
  t.equal(step.value.sessionCount(1), n);

  const bad = [...sessions.slice(0, VALIDATION_STEP + 3), { tunnel_id: 1, session_id: 1, peer_session_id: 9 }];
  const failing = validationSteps({ tunnels, sessions: bad });
  t.equal(failing.next().done, false, 'the first step passes');
  let refused: unknown;
  try { failing.next(); } catch (err) { refused = err; }
  t.ok(refused instanceof ConfigError, 'the duplicate is refused');
  t.match(refused, { field: `sessions[${VALIDATION_STEP + 3}].session_id` }, 'named by its place');
});
