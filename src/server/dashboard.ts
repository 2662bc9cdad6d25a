/**
 * The admin dashboard (SPEC §7 `GET /`, §12): one self-contained page, no
 * external assets, that reads `/stats`, `/status` and `/errors` every two
 * seconds and shows, per route, the golden signals with 15-minute
 * sparklines (inline SVG); per target, the breaker and the quota; and the
 * newest errors with their hint, whose fault, and the provider's words.
 * Below 700 px wide the tables become one card per row (phones).
 */
import { createHash } from 'node:crypto';
const STYLE = `
  :root { --fg: #1d2733; --muted: #5b6775; --line: #e3e7ec; --bad: #a61b1b; --good: #1b6b34; }
  * { box-sizing: border-box; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; padding: 1rem 1.5rem 2rem; color: var(--fg); background: #f6f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
  .meta, .muted { color: var(--muted); }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: #eef1f4; font-weight: 600; white-space: nowrap; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  svg.spark { display: block; margin-left: auto; }
  .state, .fault { font-weight: 700; padding: .05rem .45rem; border-radius: .3rem; white-space: nowrap; }
  .closed { background: #d8f3dc; color: #1b4d2b; }
  .open { background: #ffd6d6; color: #8a1010; }
  .half_open { background: #fff1c2; color: #6b4e00; }
  .shedding { background: #ffe4c7; color: #7a3b00; }
  .fault.client { background: #e4ecff; color: #1f3f8f; }
  .fault.upstream { background: #ffe4c7; color: #7a3b00; }
  .fault.proxy { background: #ffd6d6; color: #8a1010; }
  .bad { color: var(--bad); font-weight: 600; }
  .good { color: var(--good); }
  #errors li { background: #fff; border: 1px solid var(--line); border-radius: .4rem; padding: .5rem .7rem; margin-bottom: .5rem; list-style: none; }
  #errors { padding: 0; margin: 0; }
  .code { font-family: ui-monospace, monospace; font-weight: 600; }
  .report { font-size: .8em; padding: .05rem .35rem; border-radius: .3rem; background: #e4ecff; color: #1f3f8f; white-space: nowrap; }
  .provider { font-style: italic; }
  @media (max-width: 700px) {
    body { padding: .75rem; }
    table, thead, tbody, tr, td { display: block; width: 100%; }
    thead { display: none; }
    tr { background: #fff; border: 1px solid var(--line); border-radius: .4rem; margin-bottom: .6rem; }
    td { border: 0; padding: .2rem .6rem; display: flex; justify-content: space-between; gap: 1rem; text-align: right; }
    td::before { content: attr(data-label); color: var(--muted); text-align: left; }
    td.num { white-space: normal; }
    svg.spark { margin-left: .5rem; }
  }`;

const SCRIPT = `
const text = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const cell = (label, html, cls = '') => '<td data-label="' + label + '" class="' + cls + '">' + html + '</td>';
const ms = (v) => v === null ? '–' : v >= 1000 ? (v / 1000).toFixed(2) + ' s' : v.toFixed(v < 10 ? 1 : 0) + ' ms';
const rate = (v) => v === null ? '–' : (v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2)) + '/s';
const pct = (v) => v === null ? '–' : v.toFixed(v === 100 ? 0 : 1) + '%';
function spark(points, color) {
  const values = points.filter((v) => v !== null);
  if (values.length < 2) return '';
  const max = Math.max(...values, 1e-9), min = Math.min(...values, 0), w = 90, h = 18, n = points.length - 1;
  let d = '';
  points.forEach((v, i) => { if (v !== null) d += (d && points[i - 1] !== null ? 'L' : 'M') + (i * w / n).toFixed(1) + ',' + (h - 1 - (v - min) / (max - min || 1) * (h - 2)).toFixed(1); });
  return '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '" aria-hidden="true"><path d="' + d + '" fill="none" stroke="' + color + '" stroke-width="1.5"/></svg>';
}
const ago = (iso) => { const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000); return s < 60 ? s.toFixed(0) + ' s ago' : s < 3600 ? (s / 60).toFixed(0) + ' min ago' : new Date(iso).toLocaleString(); };
function routes(stats) {
  const span = (stats.routes[0]?.series.requestsPerSecond.length ?? 0) * stats.bucketSeconds;
  document.getElementById('window').textContent = 'over the last ' + stats.windowSeconds.toFixed(0) + ' s; sparklines: the last ' + (span >= 120 ? (span / 60).toFixed(0) + ' min' : span.toFixed(0) + ' s') + ' in ' + stats.bucketSeconds + ' s buckets';
  document.getElementById('routes').innerHTML = stats.routes.length === 0 ? '<tr><td colspan="9">no route</td></tr>' : stats.routes.map((r) =>
    '<tr data-route="' + text(r.route) + '">' + cell('route', text(r.route || '(no route)'), 'route') + cell('upstream', text(r.upstream ?? '(request target)')) +
    cell('requests/s', rate(r.requestsPerSecond) + spark(r.series.requestsPerSecond, '#2f6fdb'), 'num rps') +
    cell('success', '<span class="' + (r.successRate !== null && r.successRate < 99 ? 'bad' : 'good') + '">' + pct(r.successRate) + '</span>' + spark(r.series.successRate, '#1b6b34'), 'num success') +
    cell('p50', ms(r.p50Ms), 'num p50') + cell('p99', ms(r.p99Ms) + spark(r.series.p99Ms, '#7a3b00'), 'num p99') +
    cell('retries/s', rate(r.retriesPerSecond) + spark(r.series.retriesPerSecond, '#6b4e00'), 'num retries') +
    cell('rate-limited/s', rate(r.rateLimitedPerSecond) + spark(r.series.rateLimitedPerSecond, '#8a1010'), 'num limited') +
    cell('cached', r.cacheHitRate === null ? '-' : pct(r.cacheHitRate) + ' <span class="muted">' + rate(r.savedPerSecond) + ' saved</span>', 'num cached') + '</tr>').join('');
}
// With priority classes: counts by class as "critical 1, batch 2" (classes with none left out).
const byClass = (counts) => Object.entries(counts).filter(([, n]) => n > 0).map(([c, n]) => c + ' ' + n).join(', ');
// Each quota dimension of a target's pacers at its lowest across pacing keys (SPEC §15), the scarcest share first.
function tightest(pacing) {
  const low = {};
  for (const p of pacing ?? [])
    for (const [name, d] of Object.entries(p.dimensions ?? {}))
      if (d.remaining !== null && (low[name] === undefined || d.remaining < low[name].remaining)) low[name] = { name, ...d };
  const share = (d) => (d.limit ? d.remaining / d.limit : 1);
  return Object.values(low).sort((a, b) => share(a) - share(b));
}
// Requests a target's pacers hold, by class (summed over its pacing keys).
function paced(pacing) {
  const sum = {};
  for (const p of pacing ?? []) for (const [c, n] of Object.entries(p.waitingByClass ?? {})) sum[c] = (sum[c] ?? 0) + n;
  const waiting = byClass(sum);
  return waiting === '' ? '' : '<div class="muted paced">waiting: ' + text(waiting) + '</div>';
}
function targets(status) {
  const meta = 'config ' + text(status.version) + ' (' + text(status.file) + ') · in flight: ' + text(status.inFlight) + (status.draining ? ' · <span class="bad">draining</span>' : '') +
    (status.lastReload ? ' · last reload: <span class="' + (status.lastReload.result === 'failure' ? 'bad' : '') + '">' + text(status.lastReload.result) + '</span> at ' + text(status.lastReload.at) : '');
  document.getElementById('meta').innerHTML = meta;
  document.getElementById('targets').innerHTML = status.upstreams.flatMap((u) => u.targets).map((t) => {
    const quota = tightest(t.pacing);
    return '<tr data-target="' + text(t.name) + '">' + cell('target', text(t.name)) + cell('url', '<span class="muted">' + text(t.url) + '</span>') +
      cell('breaker', '<span class="state ' + text(t.breaker.state) + '">' + text(t.breaker.state.replace('_', '-')) + (t.breaker.openForMs ? ' (' + (t.breaker.openForMs / 1000).toFixed(1) + ' s)' : '') + '</span>' + (t.breaker.mode === 'report' ? ' <span class="report">report only</span>' : '') + (t.coolingForMs ? ' cooling ' + (t.coolingForMs / 1000).toFixed(0) + ' s' : ''), 'breaker') +
      cell('failure rate', pct(t.breaker.failureRate * 100), 'num') + cell('shed', pct(t.breaker.shedRate * 100), 'num') +
      cell('quota left', (quota.length ? quota.map((d) => (d.name === 'requests' ? '' : text(d.name) + ' ') + text(d.remaining) + ' / ' + text(d.limit ?? '?')).join('<br>') : '–') + paced(t.pacing), 'num quota') +
      cell('resets in', quota.length && quota[0].resetSeconds !== null ? quota[0].resetSeconds.toFixed(0) + ' s' : '–', 'num resets') + '</tr>';
  }).join('');
  document.getElementById('limits').textContent = status.routes.filter((r) => r.rateLimit).map((r) => r.name + ': ' + r.rateLimit.describe + (r.rateLimit.mode === 'report' ? ', report only' : '') + ' (tokens ' + r.rateLimit.tokens + ', queued ' + r.rateLimit.queued + (r.rateLimit.queuedByClass && r.rateLimit.queued > 0 ? ': ' + byClass(r.rateLimit.queuedByClass) : '') + ')').join(' · ');
}
function errors(journal) {
  document.getElementById('errors-meta').textContent = journal.recorded + ' since start; the newest ' + Math.min(journal.errors.length, 20) + ' of ' + journal.size + ' kept';
  document.getElementById('errors').innerHTML = journal.errors.length === 0 ? '<li class="muted">no error yet</li>' : journal.errors.slice(0, 20).map((e) =>
    '<li class="entry" data-code="' + text(e.code) + '"><div><span class="code">' + text(e.status) + ' ' + text(e.code) + '</span> <span class="fault ' + text(e.responsibility) + '">' + text(e.responsibility) + '’s fault</span>' +
    (e.stale ? ' <span class="muted">answered stale</span>' : '') + ' <span class="muted">' + text(e.method) + ' ' + text(e.path) + ' · route ' + text(e.route || '(none)') + (e.target ? ' → ' + text(e.target) : '') +
    ' · ' + text(e.attempts.length) + ' attempt(s) · ' + ago(e.time) + ' · ' + text(e.requestId) + '</span></div>' +
    (e.provider && e.provider.message ? '<div class="provider">provider said: ' + text(e.provider.message) + '</div>' : '') +
    (e.detail ? '<div class="detail">' + text(e.detail) + '</div>' : '') + '<div class="hint">' + text(e.hint) + '</div></li>').join('');
}
async function get(path) { const res = await fetch(path, { cache: 'no-store' }); if (!res.ok) throw new Error(path + ': ' + res.status); return res.json(); }
async function refresh() {
  try {
    const [stats, status, journal] = await Promise.all([get('stats'), get('status'), get('errors?limit=20')]);
    routes(stats); targets(status); errors(journal);
    document.body.dataset.loaded = 'true';
  } catch (error) {
    document.getElementById('meta').textContent = 'admin endpoints unavailable: ' + error;
  }
}
refresh();
setInterval(refresh, 2000);`;

/**
 * The page's Content-Security-Policy (SPEC §19.1): nothing runs or loads
 * but its own inline script and style, by hash, and its fetches of the
 * admin endpoints; no frame may hold it. With every value inserted as text
 * (`text()`), a provider message holding markup stays text, and even
 * markup that got through could not run.
 */
const cspHash = (content: string) => `'sha256-${createHash('sha256').update(content).digest('base64')}'`;
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${cspHash(`${SCRIPT}\n`)}`,
  `style-src ${cspHash(`${STYLE}\n`)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Breakwater</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}
</style>
</head>
<body>
<h1>Breakwater</h1>
<div class="meta" id="meta">loading…</div>
<h2>Routes <span class="muted" id="window"></span></h2>
<table><thead><tr><th>route</th><th>upstream</th><th>requests/s</th><th>success</th><th>p50</th><th>p99</th><th>retries/s</th><th>rate-limited/s</th><th>cached</th></tr></thead><tbody id="routes"></tbody></table>
<div class="muted" id="limits"></div>
<h2>Targets</h2>
<table><thead><tr><th>target</th><th>url</th><th>breaker</th><th>failure rate</th><th>shed</th><th>quota left</th><th>resets in</th></tr></thead><tbody id="targets"></tbody></table>
<h2>Recent errors <span class="muted" id="errors-meta"></span> <a href="errors">JSON</a></h2>
<ul id="errors"></ul>
<script>${SCRIPT}
</script>
</body>
</html>
`;
