/**
 * Issue 32: the `upstream` label of forward-proxy targets is bounded
 * (SPEC §6): config names always keep their series, the first
 * MAX_TARGET_SERIES targets theirs, every later one counts under
 * OTHER_TARGETS; totals are never lost.
 */
import { describe, expect, it } from 'vitest';
import { BoundedLabel, FastCounter, FastHistogram } from '../../src/observe/fast-metrics.js';

describe('BoundedLabel', () => {
  it('keeps config names and the first `max` other values; later values share the overflow value', async () => {
    const values = new BoundedLabel(2, '_other');
    values.name('stripe');
    const counter = new FastCounter<'upstream' | 'outcome'>('c', 'h', ['upstream', 'outcome'], {
      label: 'upstream',
      values,
    });
    const histogram = new FastHistogram<'upstream'>('h', 'h', ['upstream'], [1], { label: 'upstream', values });
    for (const upstream of ['a.test:80', 'b.test:80', 'c.test:80', 'd.test:443', 'stripe', 'a.test:80']) {
      counter.inc({ upstream, outcome: 'success' });
      histogram.observe({ upstream }, 0.5);
    }
    const series = (await counter.get()).values.map(({ labels, value }) => [labels.upstream, value]);
    expect(series).toEqual([
      ['a.test:80', 2],
      ['b.test:80', 1],
      ['_other', 2],
      ['stripe', 1],
    ]);
    const counts = (await histogram.get()).values
      .filter((value) => value.metricName === 'h_count')
      .map(({ labels, value }) => [labels.upstream, value]);
    expect(counts).toEqual(series);
  });
});
