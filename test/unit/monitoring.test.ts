/**
 * The shipped Prometheus rules and Grafana dashboard, judged by promtool: the rules parse
 * (`promtool check rules`), every alert fires on its unit-test series and stays quiet on the
 * ones beside it (`promtool test rules`), and every dashboard query is valid PromQL. Whether
 * the metrics and labels they read exist is checked against a live daemon in
 * test/integration/monitoring.test.ts.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { hasCommand } from '../helpers/netns.js';
import {
  ALERTS, DASHBOARD, MONITORING, loadDashboard, loadRules, missingFrom, parseExposition, promqlUses, substituteGrafana,
} from '../helpers/promql.js';
import { shortDir } from '../helpers/tmp.js';

const promtool = hasCommand('promtool') ? false : 'promtool is not installed (Debian package prometheus)';

function run(args: string[], cwd = MONITORING) {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: 60000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('promtool check rules accepts the alert rules', { skip: promtool }, async (t) => {
  const r = run(['check', 'rules', ALERTS]);
  t.equal(r.status, 0, r.out);
  t.match(r.out, `SUCCESS: ${loadRules().length} rules found`);
});

t.test('promtool test rules: every alert fires on its series and not on the others', { skip: promtool }, async (t) => {
  const r = run(['test', 'rules', 'l2tpd-alerts.test.yml']);
  t.equal(r.status, 0, r.out);
  t.match(r.out, /SUCCESS/);
  // Each alert is tested both ways: some evaluation expects it, another expects nothing.
  const tests = YAML.parse(fs.readFileSync(path.join(MONITORING, 'l2tpd-alerts.test.yml'), 'utf8')) as {
    tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
  };
  const cases = tests.tests.flatMap((x) => x.alert_rule_test ?? []);
  for (const { name } of loadRules()) {
    const mine = cases.filter((c) => c.alertname === name);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: a case where it fires`);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: a case where it does not`);
  }
});

t.test('a broken rule is reported by promtool test rules (the check is live)', { skip: promtool }, async (t) => {
  const dir = shortDir(t);
  fs.writeFileSync(path.join(dir, 'l2tpd-alerts.yml'), fs.readFileSync(ALERTS, 'utf8').replace('> 300', '> 3000'));
  fs.copyFileSync(path.join(MONITORING, 'l2tpd-alerts.test.yml'), path.join(dir, 'l2tpd-alerts.test.yml'));
  const r = run(['test', 'rules', 'l2tpd-alerts.test.yml'], dir);
  t.not(r.status, 0, 'a wrong threshold fails the unit tests');
  t.match(r.out, /alertname: L2tpSessionPeerSilent/);
});

t.test('every dashboard query is valid PromQL (promtool parses them as rules)', { skip: promtool }, async (t) => {
  const queries = loadDashboard().filter((q) => q.expr !== '');
  t.ok(queries.length >= 20, `${queries.length} queries`);
  const dir = shortDir(t);
  const write = (exprs: string[]) => {
    const rules = exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr }));
    fs.writeFileSync(path.join(dir, 'dashboard.yml'), YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
    return run(['check', 'rules', path.join(dir, 'dashboard.yml')], dir);
  };
  const r = write(queries.map((q) => substituteGrafana(q.expr)));
  t.equal(r.status, 0, r.out);
  t.match(r.out, `SUCCESS: ${queries.length} rules found`);
  t.not(write(['rate(l2tp_session_rx_bytes_total[5m]']).status, 0, 'an unbalanced query is refused');
});

t.test('the dashboard: one data source variable, unique panel ids, a query on every graph', async (t) => {
  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
    panels: Array<{ id: number; type: string; title: string; datasource?: { uid?: string }; targets?: Array<{ expr?: string; refId: string }> }>;
    templating: { list: Array<{ name: string; type: string }> };
  };
  t.same(dash.templating.list.filter((v) => v.type === 'datasource').map((v) => v.name), ['datasource']);
  const ids = dash.panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of dash.panels.filter((x) => x.type !== 'row')) {
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the data source variable`);
    const refs = (p.targets ?? []).map((x) => x.refId);
    t.ok(refs.length > 0 && new Set(refs).size === refs.length, `${p.title}: queries with distinct refIds`);
  }
});

t.test('promqlUses finds selectors, matchers and grouping labels', async (t) => {
  const use = promqlUses('sum by (reason) (rate(l2tp_tunnel_rx_drops_total{reason="foreign_source", tunnel_id=~"$t"}[5m] offset 1m)) '
    + 'and on (instance) up{job="l2tpd"} > bool 0 or vector(0) # comment l2tp_not_a_metric');
  t.same(use.selectors, [
    { metric: 'l2tp_tunnel_rx_drops_total', matchers: [{ label: 'reason', op: '=', value: 'foreign_source' }, { label: 'tunnel_id', op: '=~', value: '$t' }] },
    { metric: 'up', matchers: [{ label: 'job', op: '=', value: 'l2tpd' }] },
  ]);
  t.same(use.groupingLabels, ['reason', 'instance']);
  t.same(promqlUses('count(x) without (a) / ignoring (b) group_left (c) y').groupingLabels, ['a', 'b', 'c']);
  t.same(promqlUses('{__name__="l2tp_sessions"}').selectors, [{ metric: 'l2tp_sessions', matchers: [] }]);
});

t.test('missingFrom names what an exposition lacks', async (t) => {
  const expo = parseExposition([
    '# HELP l2tp_tunnel_rx_drops_total x', '# TYPE l2tp_tunnel_rx_drops_total counter',
    'l2tp_tunnel_rx_drops_total{tunnel_id="7",reason="foreign_source"} 0',
    'l2tp_session_rx_packets_total{tunnel_id="7",session_id="1",interface="a\\"b"} 3',
  ].join('\n'));
  t.same(expo.get('l2tp_session_rx_packets_total'), [{ tunnel_id: '7', session_id: '1', interface: 'a"b' }]);
  t.same(missingFrom(expo, 'sum by (reason) (rate(l2tp_tunnel_rx_drops_total{reason="foreign_source", instance=~"$i"}[5m]))', ['tunnel_id']), []);
  t.same(missingFrom(expo, 'rate(l2tp_tunnel_rx_drops_total{reason="bad_reason", color="red"}[5m]) + l2tp_nope', ['session']), [
    'l2tp_tunnel_rx_drops_total has no sample with reason="bad_reason"',
    'l2tp_tunnel_rx_drops_total has no label color',
    'metric l2tp_nope is not exported',
    'label session is on none of the metrics read (l2tp_tunnel_rx_drops_total, l2tp_nope)',
  ]);
});
