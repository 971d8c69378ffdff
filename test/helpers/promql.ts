/**
 * What the shipped dashboard and alert rules read from /metrics, found by parsing them (so the
 * tests check what is shipped, not a list kept beside it), and a parser of the Prometheus text
 * format to compare against.
 *
 * promqlUses() is a tokenizer that knows just enough PromQL to find metric selectors, their
 * label matchers, and the labels an expression groups or matches on (by, without, on,
 * ignoring, group_left, group_right). The real parser (promtool) judges the syntax.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ROOT } from './paths.js';

export const MONITORING = path.join(ROOT, 'monitoring');
export const DASHBOARD = path.join(MONITORING, 'l2tpd-dashboard.json');
export const ALERTS = path.join(MONITORING, 'l2tpd-alerts.yml');

export interface Matcher { label: string; op: '=' | '!=' | '=~' | '!~'; value: string }
export interface Selector { metric: string; matchers: Matcher[] }
export interface ExprUse { selectors: Selector[]; groupingLabels: string[] }

/** Aggregation operators: `sum by (x) (...)` names no metric even without a `(` after `sum`. */
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values',
  'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['bool', 'and', 'or', 'unless', 'offset', 'atan2', ...LABEL_LISTS]);

type Token = { kind: 'ident' | 'string' | 'number' | 'op' | 'punct'; text: string };

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '#') { while (i < expr.length && expr[i] !== '\n') i++; continue; }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let text = '';
      while (j < expr.length && expr[j] !== c) {
        if (expr[j] === '\\' && c !== '`') { text += expr[j + 1]; j += 2; } else { text += expr[j]; j++; }
      }
      out.push({ kind: 'string', text });
      i = j + 1;
      continue;
    }
    if (c === '[') { // range or subquery: durations only
      while (i < expr.length && expr[i] !== ']') i++;
      i++;
      continue;
    }
    const ident = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i));
    if (ident) { out.push({ kind: 'ident', text: ident[0] }); i += ident[0].length; continue; }
    const num = /^[0-9.][0-9a-zA-Z._]*/.exec(expr.slice(i)); // numbers and durations (5m, 1e3)
    if (num) { out.push({ kind: 'number', text: num[0] }); i += num[0].length; continue; }
    const op = /^(=~|!~|!=|==|>=|<=|=)/.exec(expr.slice(i));
    if (op) { out.push({ kind: 'op', text: op[0] }); i += op[0].length; continue; }
    out.push({ kind: 'punct', text: c });
    i++;
  }
  return out;
}

/** Metric selectors and grouping labels of one PromQL expression. */
export function promqlUses(expr: string): ExprUse {
  const tokens = tokenize(expr);
  const selectors: Selector[] = [];
  const groupingLabels: string[] = [];
  const matchersAt = (start: number): [Matcher[], number] => {
    const matchers: Matcher[] = [];
    let j = start + 1;
    while (j < tokens.length && tokens[j].text !== '}') {
      if (tokens[j].kind === 'ident' && tokens[j + 1]?.kind === 'op' && tokens[j + 2]?.kind === 'string') {
        matchers.push({ label: tokens[j].text, op: tokens[j + 1].text as Matcher['op'], value: tokens[j + 2].text });
        j += 3;
      } else {
        j++;
      }
    }
    return [matchers, j + 1];
  };
  for (let i = 0; i < tokens.length;) {
    const tok = tokens[i];
    const next = tokens[i + 1];
    if (tok.kind === 'ident' && LABEL_LISTS.has(tok.text) && next?.text === '(') {
      let j = i + 2;
      for (; j < tokens.length && tokens[j].text !== ')'; j++) if (tokens[j].kind === 'ident') groupingLabels.push(tokens[j].text);
      i = j + 1;
      continue;
    }
    if (tok.kind === 'ident' && tok.text === 'offset') { i += 2; continue; }
    const isCall = next?.text === '(' || (AGGREGATIONS.has(tok.text) && (next?.text === 'by' || next?.text === 'without'));
    if (tok.kind === 'ident' && !KEYWORDS.has(tok.text) && !isCall) {
      let matchers: Matcher[] = [];
      let j = i + 1;
      if (next?.text === '{') [matchers, j] = matchersAt(i + 1);
      selectors.push({ metric: tok.text, matchers });
      i = j;
      continue;
    }
    if (tok.text === '{') { // {__name__="..."} with no metric name in front
      const [matchers, j] = matchersAt(i);
      const name = matchers.find((m) => m.label === '__name__' && m.op === '=');
      selectors.push({ metric: name?.value ?? '', matchers: matchers.filter((m) => m !== name) });
      i = j;
      continue;
    }
    i++;
  }
  return { selectors, groupingLabels };
}

/**
 * Grafana's variables as Prometheus will see them: interval variables become `rateInterval`,
 * every other variable the "All" value `.*` (they only appear in regex matchers here).
 */
export function substituteGrafana(expr: string, rateInterval = '5m'): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, rateInterval)
    .replace(/\$\{\w+\}|\$\w+|\[\[\w+\]\]/g, '.*');
}

/** One query the dashboard runs: a panel target or a template variable's label_values(). */
export interface DashboardQuery {
  where: string;
  expr: string;
  /** Labels the panel's legend shows ({{label}}), or the variable's label_values() label. */
  labels: string[];
}

interface Panel {
  title?: string; type?: string; panels?: Panel[];
  targets?: Array<{ expr?: string; legendFormat?: string; refId?: string }>;
}

export function dashboardQueries(dashboard: { panels?: Panel[]; templating?: { list?: Array<Record<string, unknown>> } }): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[] = []) => {
    for (const p of panels) {
      for (const target of p.targets ?? []) {
        if (target.expr === undefined) continue;
        const labels = [...(target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]);
        out.push({ where: `panel "${p.title}" target ${target.refId}`, expr: target.expr, labels });
      }
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = v.query as string | { query?: string };
    const text = typeof q === 'string' ? q : q.query ?? '';
    const m = /^label_values\((?:(.*),\s*)?(\w+)\)$/.exec(text.trim());
    if (!m) throw new Error(`variable ${String(v.name)}: only label_values() queries are understood, got ${text}`);
    out.push({ where: `variable $${String(v.name)}`, expr: m[1] ?? '', labels: [m[2]] });
  }
  return out;
}

export function loadDashboard(): ReturnType<typeof dashboardQueries> {
  return dashboardQueries(JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')));
}

/** Every alerting or recording rule of a Prometheus rules file: name and expression. */
export function loadRules(file = ALERTS): Array<{ name: string; expr: string }> {
  const doc = YAML.parse(fs.readFileSync(file, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ name: r.alert ?? r.record ?? '?', expr: String(r.expr) })));
}

/** Samples of a Prometheus text exposition: metric name -> the label sets of its samples. */
export function parseExposition(text: string): Map<string, Array<Record<string, string>>> {
  const out = new Map<string, Array<Record<string, string>>>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    let i = name.length;
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const key = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i))![0];
        i += key.length + 2; // key="
        let value = '';
        while (line[i] !== '"') {
          if (line[i] === '\\') { value += line[i + 1] === 'n' ? '\n' : line[i + 1]; i += 2; } else { value += line[i]; i++; }
        }
        labels[key] = value;
        i++;
        if (line[i] === ',') i++;
      }
    }
    out.set(name, [...(out.get(name) ?? []), labels]);
  }
  return out;
}

/** Labels Prometheus adds to every scraped series, and the series it makes itself. */
export const TARGET_LABELS = new Set(['job', 'instance']);
export const PROMETHEUS_SERIES = new Set(['up']);

/**
 * What `expr` reads that `exposition` does not have: metrics, labels of matchers and
 * grouping, values of equality matchers, and `labels` (legend or variable). Empty when all exist.
 */
export function missingFrom(exposition: Map<string, Array<Record<string, string>>>, expr: string, labels: string[] = []): string[] {
  const use = promqlUses(substituteGrafana(expr));
  const problems: string[] = [];
  const known = new Set(TARGET_LABELS);
  for (const sel of use.selectors) {
    if (PROMETHEUS_SERIES.has(sel.metric)) continue;
    const samples = exposition.get(sel.metric);
    if (!samples) { problems.push(`metric ${sel.metric || '(no name)'} is not exported`); continue; }
    const labelNames = new Set(samples.flatMap((s) => Object.keys(s)));
    labelNames.forEach((l) => known.add(l));
    for (const m of sel.matchers) {
      if (TARGET_LABELS.has(m.label)) continue;
      if (!labelNames.has(m.label)) problems.push(`${sel.metric} has no label ${m.label}`);
      else if (m.op === '=' && !samples.some((s) => s[m.label] === m.value)) problems.push(`${sel.metric} has no sample with ${m.label}="${m.value}"`);
    }
  }
  for (const l of [...use.groupingLabels, ...labels]) {
    if (!known.has(l)) problems.push(`label ${l} is on none of the metrics read (${use.selectors.map((s) => s.metric).join(', ')})`);
  }
  return problems;
}
