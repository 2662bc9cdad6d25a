/**
 * stdout log lines are written in batches (observe/logger.ts): a lone line
 * still goes out within a moment, a burst loses none and tears none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startReplica, writeTemp, type Replica } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';

const accessLines = (replica: Replica) =>
  replica
    .output()
    .split('\n')
    .filter((line) => line.includes('"msg":"access"'));

describe('batched stdout logging', () => {
  let upstream: FaultUpstream;
  let replica: Replica;

  beforeAll(async () => {
    upstream = await startFaultUpstream(() => ({ kind: 'respond', status: 200, body: 'ok' }));
    const config = writeTemp(
      'log.yaml',
      `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlogging: { level: info, accessLog: true }\nupstreams:\n  api: { url: "${upstream.url}" }\nroutes:\n  - { name: api, upstream: api }\n`,
    );
    replica = await startReplica(config);
  });

  afterAll(async () => {
    await replica.stop();
    await upstream.close();
  });

  it('writes a lone access line without waiting for a full batch', async () => {
    expect((await request(`${replica.url}/one`)).status).toBe(200);
    await waitUntil(
      () => accessLines(replica).some((line) => line.includes('"path":"/one"')),
      5_000,
      'the access line of /one',
    );
  });

  it('writes every line of a burst, each whole', async () => {
    const before = accessLines(replica).length;
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 20 }, (_, i) => request(`${replica.url}/burst/${batch * 20 + i}`)));
    }
    await waitUntil(() => accessLines(replica).length >= before + 200, 10_000, '200 access lines');
    const burst = accessLines(replica).slice(before);
    expect(burst).toHaveLength(200);
    const paths = new Set(burst.map((line) => (JSON.parse(line) as { path: string }).path));
    expect(paths.size).toBe(200);
  });
});
