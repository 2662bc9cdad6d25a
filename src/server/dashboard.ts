/**
 * The admin dashboard (SPEC §7 `GET /`): one self-contained page, no
 * external assets, that reads /status every two seconds and shows routes,
 * upstreams, breakers, pacers and limits at a glance.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Breakwater</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2733; background: #f6f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
  .meta { color: #5b6775; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e3e7ec; }
  th { background: #eef1f4; font-weight: 600; }
  .state { font-weight: 700; padding: .1rem .5rem; border-radius: .3rem; }
  .closed { background: #d8f3dc; color: #1b4d2b; }
  .open { background: #ffd6d6; color: #8a1010; }
  .half_open { background: #fff1c2; color: #6b4e00; }
  .shedding { background: #ffe4c7; color: #7a3b00; }
  .failure { color: #8a1010; font-weight: 600; }
</style>
</head>
<body>
<h1>Breakwater</h1>
<div class="meta" id="meta">loading…</div>
<h2>Upstreams</h2>
<table><thead><tr><th>upstream / target</th><th>url</th><th>breaker</th><th>recent failure rate</th><th>shed</th><th>held</th></tr></thead><tbody id="upstreams"></tbody></table>
<h2>Pacing</h2>
<table><thead><tr><th>upstream</th><th>scope</th><th>key</th><th>remaining</th><th>reset in</th><th>rate</th><th>in flight</th></tr></thead><tbody id="pacing"></tbody></table>
<h2>Routes</h2>
<table><thead><tr><th>route</th><th>match</th><th>upstream</th><th>rate limit</th><th>tokens</th><th>queued</th></tr></thead><tbody id="routes"></tbody></table>
<script>
const text = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
async function refresh() {
  try {
    const status = await (await fetch('status', { cache: 'no-store' })).json();
    const reload = status.lastReload ? ' · last reload: <span class="' + (status.lastReload.result === 'failure' ? 'failure' : '') + '">' + text(status.lastReload.result) + '</span> at ' + text(status.lastReload.at) : '';
    document.getElementById('meta').innerHTML = 'config ' + text(status.version) + ' (' + text(status.file) + ') · in flight: ' + text(status.inFlight) + (status.draining ? ' · <span class="failure">draining</span>' : '') + reload;
    document.getElementById('upstreams').innerHTML = status.upstreams.flatMap((u) => u.targets).map((u) =>
      '<tr><td>' + text(u.name) + '</td><td>' + text(u.url) + '</td><td><span class="state ' + text(u.breaker.state) + '">' + text(u.breaker.state.replace('_', '-')) + (u.breaker.openForMs ? ' (' + (u.breaker.openForMs / 1000).toFixed(1) + ' s)' : '') + '</span>' + (u.coolingForMs ? ' cooling ' + (u.coolingForMs / 1000).toFixed(0) + ' s' : '') + '</td><td>' + (u.breaker.failureRate * 100).toFixed(0) + '%</td><td>' + (u.breaker.shedRate * 100).toFixed(0) + '%</td><td>' + text(u.breaker.held) + '</td></tr>').join('');
    const pacers = status.upstreams.flatMap((u) => u.targets).flatMap((u) => u.pacing ?? []);
    document.getElementById('pacing').innerHTML = pacers.length === 0 ? '<tr><td colspan="7">no pacer yet</td></tr>' : pacers.map((p) =>
      '<tr><td>' + text(p.upstream) + '</td><td>' + text(p.scope || '-') + '</td><td>' + text(p.key ? p.key.slice(0, 8) : '-') + '</td><td>' + (p.remaining === null ? '?' : text(p.remaining) + ' / ' + text(p.limit ?? '?')) + '</td><td>' + (p.resetSeconds === null ? '-' : text(p.resetSeconds.toFixed(0)) + ' s') + '</td><td>' + (p.ratePerSecond === null ? '-' : text(p.ratePerSecond.toFixed(2)) + '/s') + '</td><td>' + text(p.inFlight) + (p.shared ? ' (shared)' : '') + '</td></tr>').join('');
    document.getElementById('routes').innerHTML = status.routes.map((r) =>
      '<tr><td>' + text(r.name) + '</td><td>' + text(r.match) + '</td><td>' + text(r.upstream ?? '(request target)') + '</td><td>' + text(r.rateLimit ? r.rateLimit.describe : 'none') + '</td><td>' + text(r.rateLimit?.tokens ?? '') + '</td><td>' + text(r.rateLimit?.queued ?? '') + '</td></tr>').join('');
  } catch (error) {
    document.getElementById('meta').textContent = 'status unavailable: ' + error;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
