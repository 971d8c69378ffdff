/**
 * The dashboard and the alert rules against a live l2tpd: two daemons with a tunnel and two
 * sessions between them in namespaces. Every metric, label and label value the dashboard's
 * queries and the rules read (parsed out of the shipped files) must be in the daemon's
 * /metrics, and the dashboard must show every l2tp_* family the daemon exports. Then a real
 * Prometheus scrapes the daemon with the rules loaded: every dashboard query evaluates
 * without error, legends only name labels the results carry, and every rule is healthy.
 */
import t from 'tap';
import type tap from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { hasCommand, netnsUnavailable, nsRun, stopProcess, waitUntil } from '../helpers/netns.js';
import {
  ALERTS, loadDashboard, loadRules, missingFrom, parseExposition, promqlUses, substituteGrafana,
} from '../helpers/promql.js';
import { Sites, UNDERLAY, tunnelWords, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable() || (!hasCommand('curl') && 'curl is not installed');
const METRICS = '127.0.0.1:9701';
const PROMETHEUS = '127.0.0.1:9090';

function curl(ns: string, url: string): string {
  const r = nsRun(ns, 'curl', ['-sS', '--fail-with-body', '--max-time', '10', url], 20000);
  if (r.status !== 0) throw new Error(`curl ${url} in ${ns}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function pseudowire(sites: Sites): Promise<void> {
  for (const [d, local, remote] of [[sites.a, UNDERLAY.a4, UNDERLAY.b4], [sites.b, UNDERLAY.b4, UNDERLAY.a4]] as [Daemon, string, string][]) {
    await sites.start(d, ['--metrics-listen', METRICS]);
    // Hello on, so the liveness families (the Hello round-trip time) have samples too.
    sites.ok(d, [...tunnelWords(50, 'udp', local, remote, [1701, 1701]), 'hello_interval', '1']);
    for (const sid of ['1', '2']) {
      sites.ok(d, ['add', 'session', 'name', `pwd${sid}`, 'tunnel_id', '50', 'session_id', sid, 'peer_session_id', sid, 'bridge', `brd${sid}`]);
    }
  }
}

t.test('what the dashboard and the rules read exists on a live /metrics', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await pseudowire(sites);
  const scrape = (): string => curl(sites.a.ns, `http://${METRICS}/metrics`);
  t.ok(await waitUntil(() => /^l2tp_tunnel_hello_rtt_seconds\{/m.test(scrape()), 15000, 500), 'a Hello round trip measured');
  const exposition = parseExposition(scrape());

  const queries = loadDashboard();
  for (const q of queries) t.same(missingFrom(exposition, q.expr, q.labels), [], `dashboard ${q.where}: ${q.expr}`);
  for (const r of loadRules()) t.same(missingFrom(exposition, r.expr), [], `rule ${r.name}`);

  const shown = new Set(queries.flatMap((q) => promqlUses(substituteGrafana(q.expr)).selectors.map((s) => s.metric)));
  const exported = [...exposition.keys()].filter((m) => m.startsWith('l2tp'));
  t.ok(exported.length >= 25, `${exported.length} l2tp* families exported`);
  t.same(exported.filter((m) => !shown.has(m)), [], 'the dashboard shows every l2tp* family (add a panel or a target for a new one)');

  t.test('a real Prometheus evaluates every dashboard query and every rule', {
    skip: !hasCommand('prometheus') && 'prometheus is not installed (Debian package prometheus)',
  }, async (t) => prometheusChecks(t, sites));
});

async function prometheusChecks(t: tap.Test, sites: Sites): Promise<void> {
  // Prometheus drops empty labels: the host row of l2tp_tunnel_rx_drops_total has no tunnel_id.
  const emptyLabels = new Set([...parseExposition(curl(sites.a.ns, `http://${METRICS}/metrics`)).values()]
    .flatMap((samples) => samples.flatMap((s) => Object.keys(s).filter((k) => s[k] === ''))));
  const dir = fs.mkdtempSync(path.join(path.dirname(sites.a.dir), 'prom-'));
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [ALERTS],
    scrape_configs: [{ job_name: 'l2tpd', static_configs: [{ targets: [METRICS] }] }],
  }));
  const prom = spawn('ip', ['netns', 'exec', sites.a.ns, 'prometheus', `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=${PROMETHEUS}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  prom.stderr.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-4000); });
  t.teardown(() => stopProcess(prom));

  type Result = { status: string; error?: string; data: { result: Array<{ metric: Record<string, string> }> } };
  const query = (expr: string): Result => JSON.parse(curl(sites.a.ns, `http://${PROMETHEUS}/api/v1/query?query=${encodeURIComponent(expr)}`)) as Result;
  const scraped = await waitUntil(() => {
    try { return query('count_over_time(up{job="l2tpd"}[1m]) >= 4').data.result.length === 1; } catch { return false; }
  }, 30000, 500);
  t.ok(scraped, `Prometheus scraped l2tpd 4 times ${scraped ? '' : log}`);

  let withData = 0;
  for (const q of loadDashboard().filter((x) => x.expr !== '')) {
    // 10 s spans several 1 s scrapes, as $__rate_interval spans several scrape intervals.
    const r = query(substituteGrafana(q.expr, '10s'));
    t.equal(r.status, 'success', `${q.where} evaluates ${r.error ?? ''}`);
    if (r.data.result.length > 0) withData++;
    for (const series of r.data.result) {
      const missing = q.labels.filter((l) => !(l in series.metric) && !emptyLabels.has(l));
      t.same(missing, [], `${q.where}: legend labels on ${JSON.stringify(series.metric)}`);
    }
  }
  t.ok(withData >= 15, `${withData} dashboard queries have data`);

  const healthy = await waitUntil(() => {
    const rules = (JSON.parse(curl(sites.a.ns, `http://${PROMETHEUS}/api/v1/rules`)) as {
      data: { groups: Array<{ rules: Array<{ health: string }> }> };
    }).data.groups.flatMap((g) => g.rules);
    return rules.length === loadRules().length && rules.every((r) => r.health === 'ok');
  }, 10000, 500);
  t.ok(healthy, 'every rule evaluated with health ok');
  t.equal(await stopProcess(prom), 0, 'prometheus stops cleanly');
}
