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
    const rates = /\| success rate\s+\| ([\d.]+)%\s+\| ([\d.]+)%/.exec(result.stdout);
    expect(rates).not.toBeNull();
    const [direct, through] = [Number(rates![1]), Number(rates![2])];
    expect(through).toBeGreaterThan(direct);
    expect(through).toBeGreaterThan(90);
    expect(result.stdout).toMatch(/what the upstream did/);
  });
});
