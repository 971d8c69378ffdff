/**
 * The tunnel words `ttl` and `tos` (the outer IP header), end to end short of the wire: the CLI
 * parses them, validation normalises or refuses them, they compile into the socket options the
 * addon sets (per address family), `show` prints them, the config file round-trips them, and
 * encap ip tunnels sharing a socket must agree on them. The wire itself: test/integration/wire.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseCommand, UsageError } from '../../src/cli/words.js';
import { formatTunnel } from '../../src/cli/format.js';
import { ConfigError, ConflictError } from '../../src/control/errors.js';
import { ConfigStore } from '../../src/control/store.js';
import { compileTunnel } from '../../src/control/tunnel-words.js';
import { checkAddTunnel, normalizeTunnel, validateConfig } from '../../src/control/validate.js';

const UDP4 = { tunnel_id: 1, peer_tunnel_id: 1, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 5000 };
const UDP6 = { ...UDP4, local: '2001:db8::1', remote: '2001:db8::2' };
const IP4 = { tunnel_id: 2, peer_tunnel_id: 2, encap: 'ip', local: '192.0.2.1', remote: '198.51.100.2' };
const IP6 = { ...IP4, local: '2001:db8::1', remote: '2001:db8::2' };

function refuses(tt: tap.Test, input: Record<string, unknown>, field: string, re: RegExp): void {
  try {
    normalizeTunnel(input);
    tt.fail(`expected ConfigError for ${field} ${String(input[field])}`);
  } catch (err) {
    tt.ok(err instanceof ConfigError, `ConfigError for ${field} ${String(input[field])}`);
    tt.equal((err as ConfigError).field, field);
    tt.match((err as Error).message, re, (err as Error).message);
  }
}

const options = (input: Record<string, unknown>) =>
  compileTunnel(normalizeTunnel(input)).options.map((o) => [o.label, o.level, o.name, o.value]);

t.test('parsed and normalised: ttl 1..255, tos decimal or 0x hex', async (t) => {
  t.same(parseCommand(['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', '192.0.2.1', 'remote', '192.0.2.2',
    'udp_sport', '5000', 'udp_dport', '5000', 'ttl', '17', 'tos', '0xB8']).params,
  { ...UDP4, encap: 'udp', udp_csum: 'off', ttl: 17, tos: 184 }, 'the CLI takes both words');
  t.equal(normalizeTunnel({ ...UDP4, ttl: 1 }).ttl, 1);
  t.equal(normalizeTunnel({ ...UDP4, ttl: '255' }).ttl, 255);
  t.equal(normalizeTunnel({ ...UDP4, tos: '0xb8' }).tos, 0xb8, 'hex, as TOS values are usually written');
  t.equal(normalizeTunnel({ ...UDP4, tos: '0x4' }).tos, 4);
  t.equal(normalizeTunnel({ ...UDP4, tos: 40 }).tos, 40, 'JSON number');
  t.equal(normalizeTunnel({ ...UDP4, tos: '40' }).tos, 40, 'decimal string');
  t.equal(normalizeTunnel({ ...UDP4, tos: 0 }).tos, 0);
  const plain = normalizeTunnel(UDP4);
  t.notOk('ttl' in plain || 'tos' in plain, 'absent: no default written, the kernel\'s applies');
});

t.test('refused, naming the word, the value and what is allowed', async (t) => {
  refuses(t, { ...UDP4, ttl: 0 }, 'ttl', /^ttl 0: expected an integer 1\.\.255$/);
  refuses(t, { ...UDP4, ttl: 256 }, 'ttl', /^ttl 256: expected an integer 1\.\.255$/);
  refuses(t, { ...UDP4, ttl: 'inherit' }, 'ttl', /^ttl inherit: expected an integer 1\.\.255$/);
  refuses(t, { ...UDP4, tos: 256 }, 'tos', /^tos 256: expected an integer 0\.\.255, decimal or 0x hex/);
  refuses(t, { ...UDP4, tos: '0x100' }, 'tos', /^tos 0x100: expected/);
  refuses(t, { ...UDP4, tos: 'inherit' }, 'tos', /^tos inherit: expected/);
  refuses(t, { ...UDP4, tos: '-4' }, 'tos', /^tos -4: expected/);
  refuses(t, { ...UDP4, tos: '0xb9' }, 'tos', /^tos 0xb9: sets the ECN bits \(1\); expected .*multiple of 4/);
  refuses(t, { ...UDP4, tos: 3 }, 'tos', /^tos 3: sets the ECN bits \(3\)/);
  t.throws(() => parseCommand(['add', 'tunnel', 'tunnel_id', '1', 'peer_tunnel_id', '1', 'local', '192.0.2.1', 'remote', '192.0.2.2',
    'udp_sport', '5000', 'udp_dport', '5000', 'ttl']), UsageError, 'the CLI wants a value');
});

t.test('compiled into the socket options of the tunnel\'s address family', async (t) => {
  t.same(options({ ...UDP4, ttl: 9, tos: '0x28' }), [['SO_NO_CHECK', 1, 11, 1], ['IP_TTL', 0, 2, 9], ['IP_TOS', 0, 1, 0x28]], 'UDP/IPv4');
  t.same(options({ ...UDP6, ttl: 9, tos: '0x28' }), [['IPV6_UNICAST_HOPS', 41, 16, 9], ['IPV6_TCLASS', 41, 67, 0x28]], 'UDP/IPv6');
  t.same(options({ ...IP4, ttl: 200 }), [['IP_TTL', 0, 2, 200]], 'IP/IPv4');
  t.same(options({ ...IP6, tos: 0 }), [['IPV6_TCLASS', 41, 67, 0]], 'IP/IPv6: an explicit 0 is set too');
  t.same(options(IP4), [], 'neither word: the socket keeps the kernel\'s defaults');
});

t.test('show prints them when given', async (t) => {
  const view = { ...normalizeTunnel({ ...UDP4, ttl: 64, tos: 4 }) };
  t.match(formatTunnel(view), /\n {2}UDP checksum: disabled\n {2}outer header: ttl 64, tos 0x04\n$/);
  t.match(formatTunnel({ ...normalizeTunnel(IP4), tos: 0xb8 }), /\n {2}outer header: tos 0xb8\n$/);
  t.notMatch(formatTunnel(normalizeTunnel(UDP4)), /outer header/, 'nothing when neither is given');
});

t.test('the config file round-trips them', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'l2tpd-outer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ConfigStore(path.join(dir, 'l2tpd.json'));
  const cfg = validateConfig({ tunnels: [{ ...UDP6, ttl: 3, tos: '0xb8' }, { ...IP4, ttl: 250 }] });
  store.save(cfg);
  const text = readFileSync(path.join(dir, 'l2tpd.json'), 'utf8');
  t.match(text, /"udp6_csum_rx": "on",\n\s*"ttl": 3,\n\s*"tos": 184\n/, 'after the other tunnel words, in table order');
  t.same(store.load(), cfg);
});

t.test('encap ip tunnels on one local address share a socket, so they must agree', async (t) => {
  const cfg = validateConfig({ tunnels: [{ ...IP4, ttl: 9, tos: 0x20 }] });
  const conflict = (input: Record<string, unknown>, field: string, re: RegExp) => {
    try {
      checkAddTunnel(cfg, normalizeTunnel(input));
      t.fail(`expected a conflict on ${field}`);
    } catch (err) {
      t.ok(err instanceof ConflictError, `ConflictError on ${field}`);
      t.equal((err as ConflictError).status, 409);
      t.equal((err as ConflictError).field, field);
      t.match((err as Error).message, re, (err as Error).message);
    }
  };
  conflict({ ...IP4, tunnel_id: 3, ttl: 10, tos: 0x20 }, 'ttl',
    /^ttl 10: tunnel 2 shares the encap ip socket on 192\.0\.2\.1 and has ttl 9; tunnels on one local address must agree on it$/);
  conflict({ ...IP4, tunnel_id: 3, ttl: 9 }, 'tos', /^tos unset: tunnel 2 .* has tos 32;/);
  t.doesNotThrow(() => checkAddTunnel(cfg, normalizeTunnel({ ...IP4, tunnel_id: 3, remote: '198.51.100.3', ttl: 9, tos: '0x20' })),
    'the same words: accepted');
  t.doesNotThrow(() => checkAddTunnel(cfg, normalizeTunnel({ ...IP4, tunnel_id: 3, local: '192.0.2.9', ttl: 10 })),
    'another local address: another socket');
  t.doesNotThrow(() => checkAddTunnel(cfg, normalizeTunnel({ ...UDP4, tunnel_id: 3, ttl: 10 })),
    'a UDP tunnel has a socket of its own');
  let fileError: unknown;
  try { validateConfig({ tunnels: [{ ...IP4, ttl: 9 }, { ...IP4, tunnel_id: 3, remote: '198.51.100.3' }] }); } catch (err) { fileError = err; }
  t.equal((fileError as ConflictError | undefined)?.field, 'tunnels[1].ttl', 'a config file with disagreeing tunnels is refused too');
});
