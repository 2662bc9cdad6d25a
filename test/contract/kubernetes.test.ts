/**
 * deploy/kubernetes renders offline (`kubectl kustomize`) and every object
 * validates against the Kubernetes schemas (kubernetes-models, which checks
 * types, enums and required fields) plus a strict check that rejects
 * unknown fields (a typo such as `imagePullPolcy` otherwise passes). A
 * deliberately broken fixture must fail both.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig, formatProblem } from '../../src/config/index.js';
import { ROOT } from '../helpers/cli.js';

const require = createRequire(import.meta.url);
const SCHEMAS = path.dirname(require.resolve('kubernetes-models/package.json'));

/** Known property names of a kubernetes-models schema, read from its compiled validator. */
function knownKeys(schema: string): Set<string> {
  const file = schema.startsWith('IoK8sApimachinery')
    ? path.join(
        path.dirname(require.resolve('@kubernetes-models/apimachinery/package.json')),
        '_schemas',
        `${schema}.js`,
      )
    : path.join(SCHEMAS, '_schemas', `${schema}.js`);
  return new Set(
    [...readFileSync(file, 'utf8').matchAll(/void 0===data\.([A-Za-z$_][\w$]*)/g)].map((match) => match[1]!),
  );
}

/** Which schema describes which field, for the objects deploy/ uses. */
const CHILDREN: Record<string, Record<string, string>> = {
  IoK8sApiAppsV1Deployment: {
    metadata: 'IoK8sApimachineryPkgApisMetaV1ObjectMeta',
    spec: 'IoK8sApiAppsV1DeploymentSpec',
  },
  IoK8sApiAppsV1DeploymentSpec: { template: 'IoK8sApiCoreV1PodTemplateSpec' },
  IoK8sApiCoreV1PodTemplateSpec: {
    metadata: 'IoK8sApimachineryPkgApisMetaV1ObjectMeta',
    spec: 'IoK8sApiCoreV1PodSpec',
  },
  IoK8sApiCoreV1PodSpec: {
    containers: 'IoK8sApiCoreV1Container',
    volumes: 'IoK8sApiCoreV1Volume',
    securityContext: 'IoK8sApiCoreV1PodSecurityContext',
  },
  IoK8sApiCoreV1Container: {
    ports: 'IoK8sApiCoreV1ContainerPort',
    env: 'IoK8sApiCoreV1EnvVar',
    livenessProbe: 'IoK8sApiCoreV1Probe',
    readinessProbe: 'IoK8sApiCoreV1Probe',
    lifecycle: 'IoK8sApiCoreV1Lifecycle',
    resources: 'IoK8sApiCoreV1ResourceRequirements',
    securityContext: 'IoK8sApiCoreV1SecurityContext',
    volumeMounts: 'IoK8sApiCoreV1VolumeMount',
  },
  IoK8sApiCoreV1Lifecycle: { preStop: 'IoK8sApiCoreV1LifecycleHandler' },
  IoK8sApiCoreV1Service: { metadata: 'IoK8sApimachineryPkgApisMetaV1ObjectMeta', spec: 'IoK8sApiCoreV1ServiceSpec' },
  IoK8sApiCoreV1ServiceSpec: { ports: 'IoK8sApiCoreV1ServicePort' },
  IoK8sApiCoreV1ConfigMap: { metadata: 'IoK8sApimachineryPkgApisMetaV1ObjectMeta' },
};

const ROOTS: Record<string, string> = {
  Deployment: 'IoK8sApiAppsV1Deployment',
  Service: 'IoK8sApiCoreV1Service',
  ConfigMap: 'IoK8sApiCoreV1ConfigMap',
};

/** PodMonitor is a CRD (Prometheus Operator): its fields are checked by hand. */
const POD_MONITOR: Record<string, readonly string[]> = {
  '': ['apiVersion', 'kind', 'metadata', 'spec'],
  spec: ['selector', 'podMetricsEndpoints', 'namespaceSelector', 'jobLabel', 'podTargetLabels'],
  'spec.podMetricsEndpoints[]': [
    'port',
    'path',
    'interval',
    'scrapeTimeout',
    'scheme',
    'relabelings',
    'metricRelabelings',
  ],
};

function strictProblems(value: unknown, schema: string, at: string, problems: string[]): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => strictProblems(item, schema, `${at}[${index}]`, problems));
    return;
  }
  if (!value || typeof value !== 'object') return;
  const known = knownKeys(schema);
  for (const [key, child] of Object.entries(value)) {
    if (!known.has(key)) problems.push(`${at}.${key}: unknown field`);
    const childSchema = CHILDREN[schema]?.[key];
    if (childSchema) strictProblems(child, childSchema, `${at}.${key}`, problems);
  }
}

async function validate(dir: string): Promise<{ objects: string[]; problems: string[] }> {
  const rendered = execFileSync('kubectl', ['kustomize', dir], {
    encoding: 'utf8',
    env: { ...process.env, KUBECONFIG: '/dev/null' },
  });
  const objects: string[] = [];
  const problems: string[] = [];
  for (const document of parseAllDocuments(rendered)) {
    const object = document.toJS() as { apiVersion: string; kind: string; metadata: { name: string } } & Record<
      string,
      unknown
    >;
    const where = `${object.kind}/${object.metadata.name}`;
    objects.push(where);
    if (object.kind === 'PodMonitor') {
      const check = (node: unknown, keyPath: string) => {
        if (!node || typeof node !== 'object') return;
        for (const key of Object.keys(node))
          if (!POD_MONITOR[keyPath]!.includes(key)) problems.push(`${where} ${keyPath}.${key}: unknown field`);
      };
      check(object, '');
      check(object.spec, 'spec');
      for (const endpoint of (object.spec as { podMetricsEndpoints: unknown[] }).podMetricsEndpoints) {
        check(endpoint, 'spec.podMetricsEndpoints[]');
        // Prometheus scrapes from the pod network: only /metrics answers it without the admin token (SPEC §19.1).
        const scraped = (endpoint as { path?: string }).path;
        if (scraped !== '/metrics') problems.push(`${where}: scrapes ${scraped ?? '(no path)'}, not /metrics`);
      }
      continue;
    }
    const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
    const module = (await import(
      group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`
    )) as Record<string, new (data: unknown) => { validate(): void }>;
    const Model = module[object.kind];
    if (!Model) {
      problems.push(`${where}: unknown kind`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message.split('\n')[0]}`);
    }
    const root = ROOTS[object.kind];
    if (root) strictProblems(object, root, where, problems);
  }
  return { objects, problems };
}

describe('Kubernetes manifests', () => {
  it.each(['base', 'overlays/http-proxy', 'overlays/shared-redis'])(
    '%s renders and validates strictly',
    async (dir) => {
      const { objects, problems } = await validate(path.join(ROOT, 'deploy/kubernetes', dir));
      expect(problems).toEqual([]);
      expect(objects).toEqual(
        expect.arrayContaining(['Deployment/app', 'ConfigMap/breakwater-config', 'PodMonitor/app-breakwater']),
      );
    },
  );

  it('rejects a broken manifest: a wrong type and a misspelled field', async () => {
    const { problems } = await validate(path.join(ROOT, 'test/fixtures/k8s-broken'));
    expect(problems.some((problem) => problem.includes('replicas'))).toBe(true);
    expect(problems).toContain('Deployment/broken.spec.template.spec.containers[0].imagePullPolcy: unknown field');
  });

  it('keeps terminationGracePeriodSeconds above drainTimeout plus the preStop wait', async () => {
    const deployment = parseAllDocuments(
      readFileSync(path.join(ROOT, 'deploy/kubernetes/base/deployment.yaml'), 'utf8'),
    )[0]!.toJS() as {
      spec: {
        template: {
          spec: {
            terminationGracePeriodSeconds: number;
            containers: { name: string; lifecycle?: { preStop: { sleep: { seconds: number } } } }[];
          };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    const preStop = pod.containers.find((container) => container.name === 'breakwater')!.lifecycle!.preStop.sleep
      .seconds;
    const config = parseConfig(
      readFileSync(path.join(ROOT, 'deploy/kubernetes/base/breakwater.yaml'), 'utf8'),
      'breakwater.yaml',
      { env: { STRIPE_KEY: 'x' } },
    );
    if (!config.ok) throw new Error(config.problems.map(formatProblem).join('\n'));
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      config.loaded.config.shutdown.drainTimeout + preStop * 1000,
    );
  });

  it.each(['base', 'overlays/http-proxy', 'overlays/shared-redis'])('ships a valid Breakwater config in %s', (dir) => {
    const result = parseConfig(
      readFileSync(path.join(ROOT, 'deploy/kubernetes', dir, 'breakwater.yaml'), 'utf8'),
      'breakwater.yaml',
      { env: { STRIPE_KEY: 'x' } },
    );
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
  });
});

describe('docker compose file', () => {
  it('builds the image from the repository and mounts a valid config', () => {
    const compose = parseAllDocuments(
      readFileSync(path.join(ROOT, 'deploy/docker-compose.yaml'), 'utf8'),
    )[0]!.toJS() as {
      services: Record<string, { build?: string; volumes?: string[]; ports?: string[] }>;
    };
    expect(Object.keys(compose.services).sort()).toEqual(['app', 'breakwater', 'redis']);
    expect(compose.services.breakwater!.build).toBe('..');
    // Published on the machine's loopback only (SPEC §20.1): the app container reaches it over the compose network.
    expect(compose.services.breakwater!.ports).toEqual(['127.0.0.1:3128:3128', '127.0.0.1:9901:9901']);
    const mount = compose.services.breakwater!.volumes![0]!.split(':')[0]!;
    const result = parseConfig(readFileSync(path.join(ROOT, 'deploy', mount), 'utf8'), 'compose.yaml', {
      env: { STRIPE_KEY: 'x' },
    });
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
    // ... and the mounted config says what the app container needs: the proxy on the container's address.
    expect(result.ok && result.loaded.config.listen.host).toBe('0.0.0.0');
  });

  it('the image rewrites its own config to listen on 0.0.0.0, and the line it rewrites is there', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain('s/^listen: { host: 127\\.0\\.0\\.1,/listen: { host: 0.0.0.0,/');
    const shipped = readFileSync(path.join(ROOT, 'config/breakwater.yaml'), 'utf8');
    expect(shipped).toMatch(/^listen: \{ host: 127\.0\.0\.1,/m);
    const rewritten = shipped.replace(/^listen: \{ host: 127\.0\.0\.1,/m, 'listen: { host: 0.0.0.0,');
    const result = parseConfig(rewritten, 'image.yaml', { env: {} });
    expect(result.ok && result.loaded.config.listen.host).toBe('0.0.0.0');
  });
});
