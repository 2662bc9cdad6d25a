/**
 * Secret files rotated under a steady stream of requests (SPEC §18), on
 * real sockets and real files: a Kubernetes Secret volume's `..data`
 * symlink swap and an editor's write-and-rename. Within 2 s every attempt
 * carries the new value, no request fails, and no reload is counted; a
 * file that vanishes or turns empty keeps the last good value (logged,
 * counted, in /status) until a good one appears.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'bw-rotation-'));
const volume = path.join(dir, 'volume');
let upstream: FaultUpstream;
let proxy: TestProxy;

/** A Secret volume as the kubelet writes it: `token` → `..data/token`, `..data` → a timestamped folder. */
function publish(version: string, value: string): void {
  const folder = path.join(volume, `..${version}`);
  mkdirSync(folder);
  writeFileSync(path.join(folder, 'token'), value);
  symlinkSync(`..${version}`, path.join(volume, '..data_tmp'));
  // The atomic swap: rename over the old link.
  renameSync(path.join(volume, '..data_tmp'), path.join(volume, '..data'));
}

/** An editor's save: the whole file written beside, then renamed over it. */
function save(value: string): void {
  writeFileSync(path.join(dir, 'key.tmp'), value);
  renameSync(path.join(dir, 'key.tmp'), path.join(dir, 'key'));
}

beforeAll(async () => {
  mkdirSync(volume);
  publish('2026_12_08_01_00_00.1', 'k8s-token-version-one');
  symlinkSync('..data/token', path.join(volume, 'token'));
  save('editor-key-version-one');
  upstream = await startFaultUpstream(() => ({ kind: 'echo' }));
  proxy = await startProxy(
    `version: 1
upstreams:
  k8s:
    url: "${upstream.url}/k8s"
    credentials: { type: bearer, secret: { file: volume/token } }
  editor:
    url: "${upstream.url}/editor"
    credentials: { type: header, header: x-api-key, secret: { file: key } }
routes:
  - { name: k8s, match: { pathPrefix: /k8s }, upstream: k8s }
  - { name: editor, match: { pathPrefix: /editor }, upstream: editor }
`,
    { file: path.join(dir, 'breakwater.yaml') },
  );
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Requests one after another on `route` while `change` runs, until `until` holds of what the upstream saw (at
 * most 8 s): every status and the header each attempt carried, in order, with when it was sent.
 */
async function streamDuring(
  route: string,
  header: string,
  change: () => void,
  until: (seen: string) => boolean,
): Promise<{ statuses: number[]; seen: { value: string; at: number }[]; changedAt: number }> {
  const statuses: number[] = [];
  const seen: { value: string; at: number }[] = [];
  let changedAt = 0;
  for (let i = 0; i < 800; i++) {
    if (i === 10) {
      change();
      changedAt = Date.now();
    }
    const at = Date.now();
    const res = await request(`${proxy.url}/${route}/steady/${i}`);
    statuses.push(res.status);
    const value = String(upstream.requests.at(-1)!.headers[header]);
    seen.push({ value, at });
    if (changedAt > 0 && until(value) && Date.now() - changedAt > 300) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { statuses, seen, changedAt };
}

const metric = async (pattern: RegExp) => {
  const text = (await request(`${proxy.adminUrl}/metrics`)).text;
  return Number(pattern.exec(text)?.[1] ?? NaN);
};
const rotations = (upstream: string, result: string) =>
  metric(new RegExp(`breakwater_credential_rotations_total\\{upstream="${upstream}",result="${result}"\\} (\\d+)`));
const reloads = () => metric(/breakwater_config_reloads_total\{result="success"\} (\d+)/);

/** The values carried after the change: once the new one appears, only it; within 2 s of the change. */
function expectSwitched(run: Awaited<ReturnType<typeof streamDuring>>, before: string, after: string): void {
  expect(run.statuses.every((status) => status === 200)).toBe(true);
  const firstNew = run.seen.findIndex((s) => s.value === after);
  expect(firstNew).toBeGreaterThan(0);
  expect(run.seen.slice(0, firstNew).every((s) => s.value === before)).toBe(true);
  expect(run.seen.slice(firstNew).every((s) => s.value === after)).toBe(true);
  expect(run.seen[firstNew]!.at - run.changedAt).toBeLessThan(2000);
}

describe('secret file rotation (SPEC §18)', () => {
  it("a Secret volume's ..data swap: the new token within 2 s, no request failed, no reload", async () => {
    const reloadsBefore = await reloads();
    const rotated = await rotations('k8s', 'success');
    const run = await streamDuring(
      'k8s',
      'authorization',
      () => publish('2026_12_08_01_05_00.2', 'k8s-token-version-two\n'),
      (value) => value === 'Bearer k8s-token-version-two',
    );
    expectSwitched(run, 'Bearer k8s-token-version-one', 'Bearer k8s-token-version-two');
    expect(await reloads()).toBe(reloadsBefore);
    expect(await rotations('k8s', 'success')).toBe(rotated + 1);
  });

  it("an editor's write-and-rename: the same", async () => {
    const reloadsBefore = await reloads();
    const run = await streamDuring(
      'editor',
      'x-api-key',
      () => save('editor-key-version-two'),
      (value) => value === 'editor-key-version-two',
    );
    expectSwitched(run, 'editor-key-version-one', 'editor-key-version-two');
    expect(await reloads()).toBe(reloadsBefore);
  });

  it('a file that vanishes, then turns empty, keeps the last good value: logged, counted, in /status; a good one is taken again', async () => {
    const failures = await rotations('editor', 'failure');
    unlinkSync(path.join(dir, 'key'));
    const gone = await streamDuring(
      'editor',
      'x-api-key',
      () => {},
      () => true,
    );
    await new Promise((resolve) => setTimeout(resolve, 600));
    const kept = await request(`${proxy.url}/editor/after-vanish`);
    expect(kept.status).toBe(200);
    expect(gone.statuses.every((status) => status === 200)).toBe(true);
    expect(upstream.requests.at(-1)!.headers['x-api-key']).toBe('editor-key-version-two');
    expect(await rotations('editor', 'failure')).toBe(failures + 1);
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      upstreams: { name: string; credentials: { error: string | null; source: string } }[];
    }>();
    const editor = status.upstreams.find((u) => u.name === 'editor')!.credentials;
    expect(editor.error).toContain('ENOENT');
    expect(editor.error).toContain(path.join(dir, 'key'));
    const warned = proxy.logs().find((l) => l.msg === 'secret file unreadable: last value kept');
    expect(warned).toMatchObject({ level: 'warn', upstream: 'editor', path: path.join(dir, 'key') });

    save('   \n');
    await new Promise((resolve) => setTimeout(resolve, 800));
    await request(`${proxy.url}/editor/after-empty`);
    expect(upstream.requests.at(-1)!.headers['x-api-key']).toBe('editor-key-version-two');
    expect(await rotations('editor', 'failure')).toBe(failures + 2);

    const run = await streamDuring(
      'editor',
      'x-api-key',
      () => save('editor-key-version-three'),
      (value) => value === 'editor-key-version-three',
    );
    expectSwitched(run, 'editor-key-version-two', 'editor-key-version-three');
    const after = (await request(`${proxy.adminUrl}/status`)).json<{
      upstreams: { name: string; credentials: { error: string | null } }[];
    }>();
    expect(after.upstreams.find((u) => u.name === 'editor')!.credentials.error).toBeNull();
  });
});

describe('rotation across a config reload (SPEC §18)', () => {
  it("an unchanged upstream keeps its credentials; the new runtime's poller takes the files over, counted once", async () => {
    const reloadsBefore = await reloads();
    const result = await proxy.app.reload('test');
    expect(result.result).toBe('success');
    expect(await reloads()).toBe(reloadsBefore + 1);
    const rotated = await rotations('editor', 'success');
    const run = await streamDuring(
      'editor',
      'x-api-key',
      () => save('editor-key-version-four'),
      (value) => value === 'editor-key-version-four',
    );
    expectSwitched(run, 'editor-key-version-three', 'editor-key-version-four');
    // Give an old poller, were it still looking, time to count it too.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(await rotations('editor', 'success')).toBe(rotated + 1);
  });
});
