import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../../src/control/errors.js';
import { ConfigStore, serializeConfig } from '../../src/control/store.js';
import { sortConfig, validateConfig } from '../../src/control/validate.js';
import { inWordOrder } from '../../src/control/vocabulary.js';
import { TUNNEL_WORDS } from '../../src/control/tunnel-words.js';
import { SESSION_WORDS } from '../../src/control/session-words.js';

const CFG = validateConfig({
  tunnels: [
    { tunnel_id: 3001, peer_tunnel_id: 4001, encap: 'ip', local: '192.0.2.1', remote: '192.0.2.3' },
    { tunnel_id: 3000, peer_tunnel_id: 4000, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000 },
  ],
  sessions: [
    { tunnel_id: 3000, session_id: 1001, peer_session_id: 2001, bridge: 'br0' },
    { tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, cookie: '0123ABCD' },
  ],
});

t.test('missing file is an empty config; save creates directory and round-trips', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'etc', 'l2tpd', 'l2tpd.json');
  const store = new ConfigStore(file);
  t.same(store.load(), { tunnels: [], sessions: [] });
  store.save(CFG);
  t.ok(fs.existsSync(file));
  t.equal(fs.statSync(file).mode & 0o777, 0o640, 'file mode 0640');
  t.equal(fs.statSync(path.dirname(file)).mode & 0o777 & ~process.umask(), 0o750 & ~process.umask(), 'dir mode 0750 (less umask)');
  t.same(fs.readdirSync(path.dirname(file)), ['l2tpd.json'], 'no temp file left behind');
  const loaded = store.load();
  t.same(loaded.tunnels.map((x) => x.tunnel_id), [3000, 3001], 'sorted by tunnel_id');
  t.same(loaded.sessions.map((x) => x.session_id), [1000, 1001], 'sorted by (tunnel_id, session_id)');
  t.equal(loaded.sessions[0].cookie, '0123abcd');
  t.same(validateConfig(loaded), loaded, 'what is saved is valid');
});

t.test('stable text: key order, 2-space JSON, trailing newline', async (t) => {
  const text = serializeConfig(CFG);
  t.ok(text.endsWith('}\n'));
  t.equal(serializeConfig(validateConfig(JSON.parse(text))), text, 'idempotent');
  const first = text.split('\n').slice(0, 5).join('\n');
  t.equal(first, '{\n  "tunnels": [\n    {\n      "tunnel_id": 3000,\n      "peer_tunnel_id": 4000,');
  const tunnel = JSON.parse(text).tunnels[0];
  t.same(Object.keys(tunnel), ['tunnel_id', 'peer_tunnel_id', 'encap', 'local', 'remote', 'udp_sport', 'udp_dport', 'udp_csum']);
  const session = JSON.parse(text).sessions[1];
  t.same(Object.keys(session), ['tunnel_id', 'session_id', 'peer_session_id', 'l2spec_type', 'seq', 'offset',
    'peer_offset', 'reorder_timeout', 'bridge']);
});

t.test('the text is JSON.stringify(…, null, 2) of the sorted config, whatever was formatted before', async (t) => {
  const reference = (cfg: typeof CFG): string => `${JSON.stringify({
    tunnels: JSON.parse(serializeConfig({ tunnels: cfg.tunnels, sessions: [] })).tunnels,
    sessions: JSON.parse(serializeConfig({ tunnels: [], sessions: cfg.sessions })).sessions,
  }, null, 2)}\n`;
  t.equal(serializeConfig(CFG), reference(CFG), 'tunnels and sessions');
  t.equal(serializeConfig({ tunnels: [], sessions: [] }), '{\n  "tunnels": [],\n  "sessions": []\n}\n', 'empty arrays as [] ');
  t.equal(serializeConfig({ tunnels: CFG.tunnels, sessions: [] }), reference({ tunnels: CFG.tunnels, sessions: [] }), 'no sessions');
  // Entries are formatted once and kept: a changed entry is a new object, and its new text is written.
  const before = serializeConfig(CFG);
  const renamed = { ...CFG.sessions[0], name: 'pw0' };
  const after = serializeConfig({ tunnels: CFG.tunnels, sessions: [renamed, CFG.sessions[1]] });
  t.not(after, before);
  t.equal(JSON.parse(after).sessions.find((x: { session_id: number }) => x.session_id === renamed.session_id).name, 'pw0', 'the changed entry as it is now');
  t.equal(serializeConfig(CFG), before, 'the old entries still give the old text');
});

t.test('many entries: the text and the file stay exact through adds, deletes and changes anywhere', async (t) => {
  const inOrder = (cfg: typeof CFG): string => `${JSON.stringify({
    tunnels: sortConfig(cfg).tunnels.map((e) => inWordOrder(e, TUNNEL_WORDS)),
    sessions: sortConfig(cfg).sessions.map((e) => inWordOrder(e, SESSION_WORDS)),
  }, null, 2)}\n`;
  const tunnels = validateConfig({ tunnels: Array.from({ length: 300 }, (_, i) => ({ tunnel_id: i + 1, peer_tunnel_id: i + 1, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 2000 + i, udp_dport: 1701 })), sessions: [] }).tunnels;
  const session = (tid: number, sid: number, extra: object = {}) =>
    validateConfig({ tunnels: [tunnels[tid - 1]], sessions: [{ tunnel_id: tid, session_id: sid, peer_session_id: sid, ...extra }] }).sessions[0];
  let sessions = Array.from({ length: 3000 }, (_, i) => session(i % 300 + 1, i + 10));
  const file = path.join(t.testdir({}), 'l2tpd.json');
  const store = new ConfigStore(file);
  const check = (what: string) => {
    const cfg = { tunnels, sessions };
    const expected = inOrder(cfg);
    t.equal(serializeConfig(cfg), expected, what);
    store.saveValid(cfg);
    t.equal(fs.readFileSync(file, 'utf8'), expected, `${what}: the file`);
  };
  check('first');
  sessions = [session(1, 1), ...sessions];
  check('an entry added in front');
  sessions = sessions.filter((s) => s.session_id !== 1500);
  check('one deleted in the middle');
  sessions = sessions.map((s) => (s.session_id === 2000 ? session(s.tunnel_id, 2000, { name: 'pw2000' }) : s));
  check('one changed');
  sessions = [...sessions, session(300, 99999)];
  check('one added at the end');
  sessions = sessions.filter((s) => s.session_id % 7 !== 0);
  check('many deleted');
  sessions = sessions.slice(0, 1);
  check('one left');
});

t.test('save is atomic: temp file + rename, old content intact on failure', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'l2tpd.json');
  const store = new ConfigStore(file);
  store.save(CFG);
  const before = fs.readFileSync(file, 'utf8');
  const inodeBefore = fs.statSync(file).ino;

  // An invalid config is refused before anything is written.
  t.throws(() => store.save({ tunnels: [{ ...CFG.tunnels[0], tunnel_id: 0 }], sessions: [] }), ConfigError);
  t.equal(fs.readFileSync(file, 'utf8'), before, 'unchanged after refused save');

  // A failure while writing (temp path occupied by a directory) leaves the target untouched.
  const tmp = `${file}.tmp-${process.pid}`;
  fs.mkdirSync(tmp);
  t.throws(() => store.save({ tunnels: [], sessions: [] }));
  t.equal(fs.readFileSync(file, 'utf8'), before, 'unchanged after failed write');
  fs.rmdirSync(tmp);

  // A successful save replaces the file by rename (new inode), never rewrites it in place.
  store.save({ tunnels: [CFG.tunnels[0]], sessions: [] });
  t.not(fs.statSync(file).ino, inodeBefore, 'replaced by rename');
  t.notOk(fs.existsSync(tmp), 'temp file gone');
  t.same(store.load().tunnels.map((x) => x.tunnel_id), [3001]);
});

t.test('load refuses corrupt or invalid files, naming the file', async (t) => {
  const dir = t.testdir({
    'bad.json': '{"tunnels": [',
    'invalid.json': JSON.stringify({ tunnels: [{ tunnel_id: 0 }] }),
    'dup.json': JSON.stringify({ tunnels: [CFG.tunnels[0], CFG.tunnels[0]] }),
    'empty.json': '',
  });
  const bad = path.join(dir, 'bad.json');
  t.throws(() => new ConfigStore(bad).load(), { name: 'ConfigError', message: new RegExp(`^${bad}: invalid JSON: `) });
  const invalid = path.join(dir, 'invalid.json');
  t.throws(() => new ConfigStore(invalid).load(),
    { message: `${invalid}: tunnels[0].tunnel_id 0: expected an integer 1..4294967295`, field: 'tunnels[0].tunnel_id' });
  const dup = path.join(dir, 'dup.json');
  t.throws(() => new ConfigStore(dup).load(), { message: new RegExp(`^${dup}: tunnels\\[1\\]\\.tunnel_id 3001: tunnel 3001 already exists`) });
  t.throws(() => new ConfigStore(bad).loadRaw(), { message: new RegExp(`^${bad}: invalid JSON: `) });
  t.same(new ConfigStore(invalid).loadRaw(), { tunnels: [{ tunnel_id: 0 }] }, 'loadRaw does not validate');
  t.same(new ConfigStore(path.join(dir, 'nope.json')).loadRaw(), { tunnels: [], sessions: [] }, 'loadRaw: missing = empty');
  t.same(new ConfigStore(path.join(dir, 'empty.json')).load(), { tunnels: [], sessions: [] }, 'empty file = empty config');
  const deep = path.join(dir, 'deep.json');
  fs.writeFileSync(deep, `{"tunnels": ${'['.repeat(100000)}${']'.repeat(100000)}}`);
  t.throws(() => new ConfigStore(deep).load(), { name: 'ConfigError', message: `${deep}: nested deeper than 16 levels; expected {"tunnels": [...], "sessions": [...]}` });
  t.throws(() => new ConfigStore(dir).load(), { message: new RegExp(`^${dir}: cannot read: EISDIR`) });
});

t.test('reload refuses a missing or empty file; an explicit empty config is accepted', async (t) => {
  const dir = t.testdir({ 'empty.json': '', 'blank.json': ' \n\t\n', 'explicit.json': '{"tunnels": [], "sessions": []}\n' });
  for (const [name, what] of [['nope.json', 'missing'], ['empty.json', 'empty'], ['blank.json', 'empty']]) {
    const file = path.join(dir, name);
    t.same(new ConfigStore(file).loadRaw('start'), { tunnels: [], sessions: [] }, `start-up: ${what} file = empty config`);
    t.throws(() => new ConfigStore(file).loadRaw('reload'), {
      name: 'ConfigError', field: 'config',
      message: `${file}: ${what}; reload refused, running state kept (to remove everything, write {"tunnels": [], "sessions": []})`,
    }, `reload: ${what} file refused`);
  }
  t.same(new ConfigStore(path.join(dir, 'explicit.json')).loadRaw('reload'), { tunnels: [], sessions: [] }, 'explicit empty config');
});

t.test('start-up removes temp files of writers that died, and only those', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'l2tpd.json');
  const store = new ConfigStore(file);
  store.save(CFG);
  // A pid that is not running: the largest pid this kernel hands out, plus one.
  const maxPid = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const dead = [`l2tpd.json.tmp-${maxPid + 1}`, `l2tpd.json.tmp-${maxPid + 2}`];
  const keep = [`l2tpd.json.tmp-${process.pid}`, `l2tpd.json.tmp-${process.ppid}`, 'l2tpd.json.tmp-x1', 'other.json.tmp-1'];
  for (const name of [...dead, ...keep]) fs.writeFileSync(path.join(dir, name), '{"tunnels": [');
  t.same(store.removeStaleTemps().sort(), dead.sort(), 'the dead writers\' temp files are removed');
  t.same(fs.readdirSync(dir).sort(), ['l2tpd.json', ...keep].sort(), 'the config, live writers\' and foreign files stay');
  t.same(store.load().tunnels.length, 2, 'config intact');
});
