/**
 * `breakwater demo` (what `npm run demo` runs): exits 0, leaves nothing
 * running, and its table shows a higher success rate through Breakwater
 * than without.
 */
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

describe('demo', () => {
  it('shows the app doing better through Breakwater', async () => {
    const started = Date.now();
    const result = await runCli(['demo'], { timeoutMs: 60_000 });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    const rates = /\| success rate\s+\| ([\d.]+)%\s+\| ([\d.]+)%\s+\| ([\d.]+)%/.exec(result.stdout);
    expect(rates).not.toBeNull();
    const [direct, through, survived] = [Number(rates![1]), Number(rates![2]), Number(rates![3])];
    expect(through).toBeGreaterThan(direct);
    // The demo's upstream fails ~37 % of attempts and is down 4 s of 16 (direct: 47.3 %, seeded).
    // Through Breakwater it depends on the machine's load: measured 90.3-92.7 % alone, 85.5-92.2 %
    // with two busy loops beside it, and once 80.2 % on a loaded CI machine (a bound of 85 % failed
    // there). The bound: at least 20 points better than direct.
    expect(through).toBeGreaterThan(direct + 20);
    // A second region and stale reads lift it further (SPEC §8), and both were used.
    expect(survived).toBeGreaterThan(through);
    const answered = /\| answered by .*second region (\d+), stale (\d+)/.exec(result.stdout);
    expect(answered).not.toBeNull();
    expect(Number(answered![1])).toBeGreaterThan(0);
    // Answers saying the account has no credit (insufficient_quota): passed on bare directly, answered at once through Breakwater.
    expect(result.stdout).toMatch(
      /\| out of credit \(insufficient_quota\) \| \d+ passed on as a bare 429 +\| \d+ UPSTREAM_QUOTA_EXHAUSTED, none retried [^|]*credit left/,
    );
    expect(result.stdout).toMatch(/what the upstream did/);
  });
});
