/**
 * The word tables hold together: names and aliases are unique; every word is printed by exactly
 * one `show` line; what a table says about a word (required, default, always present) agrees with
 * itself; every default is a value its own parser accepts; and normalisation applies defaults
 * exactly when the word applies.
 */
import t from 'tap';
import { TUNNEL, TUNNEL_WORDS } from '../../src/control/tunnel-words.js';
import { SESSION, SESSION_WORDS } from '../../src/control/session-words.js';
import { normalize, type WordDef } from '../../src/control/vocabulary.js';

const tables = [TUNNEL, SESSION] as const;

t.test('names, aliases and show lines', async (t) => {
  for (const table of tables) {
    const words = table.words as readonly WordDef<string, unknown, boolean, unknown>[];
    const spellings = words.flatMap((w) => [w.word, ...(w.aliases ?? [])]);
    t.equal(new Set(spellings).size, spellings.length, `${table.object}: every name and alias is used once`);
    const shown = table.show.flatMap((l) => l.words);
    t.same([...shown].sort(), words.map((w) => w.word).sort(), `${table.object}: every word is in exactly one show line`);
    for (const w of words) {
      t.ok(w.help.length > 20 && !w.help.includes('|') && !w.help.includes('\n'), `${table.object} ${w.word}: a one-paragraph help for the README table`);
      t.ok(w.defaultText.length > 0, `${table.object} ${w.word}: default described`);
      t.ok(/^[A-Z]+$|^\{[a-z0-9|]+\}$/.test(w.type.placeholder), `${table.object} ${w.word}: placeholder ${w.type.placeholder}`);
      if (w.type.values) t.equal(w.type.placeholder, `{${w.type.values.join('|')}}`, `${table.object} ${w.word}: enum placeholder lists the values`);
    }
  }
});

t.test('required, default and always agree, and defaults are valid values', async (t) => {
  for (const table of tables) {
    for (const w of table.words as readonly WordDef<string, unknown, boolean, unknown>[]) {
      const unconditionalDefault = w.default !== undefined && w.appliesWhen === undefined;
      t.equal(w.always, w.required === true || unconditionalDefault, `${table.object} ${w.word}: always present iff required or defaulted everywhere`);
      t.ok(!(w.required === true && w.default !== undefined), `${table.object} ${w.word}: not both required and defaulted`);
      if (w.default !== undefined) t.same(w.type.parse(w.word, w.default), w.default, `${table.object} ${w.word}: default ${String(w.default)} parses to itself`);
    }
  }
});

t.test('defaults are applied where a word applies, and only there', async (t) => {
  const udp4 = normalize(TUNNEL, { tunnel_id: 1, peer_tunnel_id: 1, local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 1, udp_dport: 2 });
  t.same(Object.keys(udp4), ['tunnel_id', 'peer_tunnel_id', 'encap', 'local', 'remote', 'udp_sport', 'udp_dport', 'udp_csum'],
    'UDP over IPv4: encap and udp_csum defaulted, in table order');
  const ip6 = normalize(TUNNEL, { tunnel_id: 1, peer_tunnel_id: 1, encap: 'ip', local: '2001:db8::1', remote: '2001:db8::2' });
  t.same(Object.keys(ip6), ['tunnel_id', 'peer_tunnel_id', 'encap', 'local', 'remote'], 'IP: no UDP word, not even a default');
  const s = normalize(SESSION, { tunnel_id: 1, session_id: 2, peer_session_id: 3 });
  const defaulted = SESSION_WORDS.filter((w) => 'default' in w && w.default !== undefined).map((w) => w.word);
  t.same(Object.keys(s), ['tunnel_id', 'session_id', 'peer_session_id', ...defaulted], 'session: every default applied');
  t.same(TUNNEL_WORDS.map((w) => w.word).slice(0, 5), ['tunnel_id', 'peer_tunnel_id', 'encap', 'local', 'remote']);
});
