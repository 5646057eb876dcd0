import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { AMLBATCH_ENVIRONMENT_VARIABLES, loadConfig, loadTemporalConnectConfig } from '../../common/config';
import { createTestPki, type TestPki } from './test-pki';

// How the worker maps its environment to a Temporal connection and a metrics endpoint. The CLI reads the same
// variables through @temporalio/envconfig (client/batch-client.ts), so each valid case is also compared with it.

let pki: TestPki;
/** An empty home folder, so no developer's ~/.config/temporalio/temporal.toml leaks into a case. */
let home: string;

beforeAll(() => {
  pki = createTestPki();
  home = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-home-'));
});

function environment(variables: Record<string, string>): Record<string, string> {
  return { HOME: home, ...variables };
}

function bytes(file: string): Uint8Array {
  return Uint8Array.from(readFileSync(file));
}

describe('loadTemporalConnectConfig', () => {
  test('defaults to a plaintext local server', () => {
    const config = loadTemporalConnectConfig(environment({}));

    expect(config.connectionOptions.address).toBe('localhost:7233');
    expect(config.connectionOptions.tls).toBeUndefined();
    expect(config.connectionOptions.apiKey).toBeUndefined();
    expect(config.namespace).toBe('default');
    expect(config.transport).toEqual({ tls: false, clientCertificate: false, apiKey: false });
  });

  test('address and namespace come from the environment', () => {
    const config = loadTemporalConnectConfig(
      environment({ TEMPORAL_ADDRESS: 'prod.example.internal:7233', TEMPORAL_NAMESPACE: 'scoring.a1b2c' }),
    );

    expect(config.connectionOptions.address).toBe('prod.example.internal:7233');
    expect(config.namespace).toBe('scoring.a1b2c');
  });

  test('API key turns TLS on', () => {
    const config = loadTemporalConnectConfig(environment({ TEMPORAL_API_KEY: 'key-value-123' }));

    expect(config.connectionOptions.apiKey).toBe('key-value-123');
    expect(config.connectionOptions.tls).toBe(true);
    expect(config.transport).toEqual({ tls: true, clientCertificate: false, apiKey: true });
    expect(JSON.stringify(config.transport)).not.toContain('key-value-123');
  });

  test('API key with TEMPORAL_TLS=false stays plaintext', () => {
    const config = loadTemporalConnectConfig(environment({ TEMPORAL_API_KEY: 'key-value-123', TEMPORAL_TLS: 'false' }));

    expect(config.connectionOptions.apiKey).toBe('key-value-123');
    expect(config.connectionOptions.tls).toBe(false);
    expect(config.transport.tls).toBe(false);
  });

  test('TEMPORAL_TLS=true alone gives TLS with system roots', () => {
    const config = loadTemporalConnectConfig(environment({ TEMPORAL_TLS: 'true' }));

    expect(config.connectionOptions.tls).toEqual({});
    expect(config.transport).toEqual({ tls: true, clientCertificate: false, apiKey: false });
  });

  test('mTLS paths become the certificate pair, CA and server name', () => {
    const config = loadTemporalConnectConfig(
      environment({
        TEMPORAL_ADDRESS: '127.0.0.1:7233',
        TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertPath,
        TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyPath,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCertPath,
        TEMPORAL_TLS_SERVER_NAME: pki.serverName,
      }),
    );

    const tls = config.connectionOptions.tls;
    if (typeof tls !== 'object' || tls === null) throw new Error(`expected TLS options, got ${String(tls)}`);
    expect(tls.clientCertPair?.crt).toEqual(bytes(pki.clientCertPath));
    expect(tls.clientCertPair?.key).toEqual(bytes(pki.clientKeyPath));
    expect(tls.serverRootCACertificate).toEqual(bytes(pki.caCertPath));
    expect(tls.serverNameOverride).toBe(pki.serverName);
    expect(config.transport).toEqual({ tls: true, clientCertificate: true, apiKey: false, serverName: pki.serverName });
  });

  test('mTLS PEM data variables work like paths', () => {
    const config = loadTemporalConnectConfig(
      environment({
        TEMPORAL_TLS_CLIENT_CERT_DATA: readFileSync(pki.clientCertPath, 'utf8'),
        TEMPORAL_TLS_CLIENT_KEY_DATA: readFileSync(pki.clientKeyPath, 'utf8'),
      }),
    );

    const tls = config.connectionOptions.tls;
    if (typeof tls !== 'object' || tls === null) throw new Error(`expected TLS options, got ${String(tls)}`);
    expect(Buffer.from(tls.clientCertPair!.crt).toString('utf8')).toBe(readFileSync(pki.clientCertPath, 'utf8'));
    expect(Buffer.from(tls.clientCertPair!.key).toString('utf8')).toBe(readFileSync(pki.clientKeyPath, 'utf8'));
    expect(config.transport.clientCertificate).toBe(true);
  });

  test('TOML profile is read and env overrides it', () => {
    const configFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-toml-')), 'temporal.toml');
    writeFileSync(
      configFile,
      [
        '[profile.prod]',
        'address = "prod.example.internal:7233"',
        'namespace = "scoring"',
        '[profile.prod.tls]',
        `client_cert_path = "${pki.clientCertPath}"`,
        `client_key_path = "${pki.clientKeyPath}"`,
        '',
      ].join('\n'),
    );

    const fromProfile = loadTemporalConnectConfig(environment({ TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: 'prod' }));
    const overridden = loadTemporalConnectConfig(
      environment({ TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: 'prod', TEMPORAL_ADDRESS: '127.0.0.1:7233' }),
    );

    expect(fromProfile.connectionOptions.address).toBe('prod.example.internal:7233');
    expect(fromProfile.namespace).toBe('scoring');
    expect(fromProfile.transport.clientCertificate).toBe(true);
    expect(overridden.connectionOptions.address).toBe('127.0.0.1:7233');
    expect(overridden.namespace).toBe('scoring');
  });

  test('gRPC metadata variables become headers', () => {
    const config = loadTemporalConnectConfig(environment({ TEMPORAL_GRPC_META_X_TENANT: 'team-a' }));

    expect(config.connectionOptions.metadata).toEqual({ 'x-tenant': 'team-a' });
  });

  test.each([
    ['no settings', {}],
    ['API key', { TEMPORAL_API_KEY: 'key-value-123', TEMPORAL_NAMESPACE: 'scoring.a1b2c' }],
    [
      'mTLS',
      {
        TEMPORAL_ADDRESS: '127.0.0.1:7233',
        TEMPORAL_TLS_CLIENT_CERT_PATH: '<client cert>',
        TEMPORAL_TLS_CLIENT_KEY_PATH: '<client key>',
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: '<ca>',
        TEMPORAL_TLS_SERVER_NAME: 'amlbatch-test-server',
      },
    ],
  ])('worker matches the CLI loader: %s', (_name, template: Record<string, string>) => {
    const files: Record<string, string> = {
      '<client cert>': pki.clientCertPath,
      '<client key>': pki.clientKeyPath,
      '<ca>': pki.caCertPath,
    };
    const variables = environment(Object.fromEntries(Object.entries(template).map(([key, value]) => [key, files[value] ?? value])));

    const worker = loadTemporalConnectConfig(variables);
    const cli = loadClientConnectConfig({ overrideEnvVars: variables });

    expect(worker.connectionOptions).toEqual({ ...cli.connectionOptions, address: cli.connectionOptions.address ?? 'localhost:7233' });
    expect(worker.namespace).toBe(cli.namespace ?? 'default');
  });

  test.each([
    [
      'certificate without key',
      () => ({ TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertPath }),
      'also set TEMPORAL_TLS_CLIENT_KEY_PATH',
    ],
    ['key without certificate', () => ({ TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyPath }), 'also set TEMPORAL_TLS_CLIENT_CERT_PATH'],
    [
      'unreadable certificate file',
      () => ({ TEMPORAL_TLS_CLIENT_CERT_PATH: '/nonexistent/client.pem', TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyPath }),
      'TEMPORAL_TLS_CLIENT_CERT_PATH (or its profile setting) names /nonexistent/client.pem, which cannot be read (ENOENT)',
    ],
    [
      'unreadable CA file',
      () => ({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: '/nonexistent/ca.pem' }),
      'TEMPORAL_TLS_SERVER_CA_CERT_PATH (or its profile setting) names /nonexistent/ca.pem',
    ],
    ['upper-case TLS switch', () => ({ TEMPORAL_TLS: 'TRUE' }), 'TEMPORAL_TLS=TRUE is invalid; use true or false'],
    [
      'disabled host verification',
      () => ({ TEMPORAL_TLS: 'true', TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' }),
      'set TEMPORAL_TLS_SERVER_NAME to the host name',
    ],
    [
      'missing config file',
      () => ({ TEMPORAL_CONFIG_FILE: '/nonexistent/temporal.toml' }),
      'TEMPORAL_CONFIG_FILE=/nonexistent/temporal.toml cannot be read',
    ],
  ])('rejects %s', (_name, variables: () => Record<string, string>, message: string) => {
    expect(() => loadTemporalConnectConfig(environment(variables()))).toThrow(message);
  });
});

describe('loadConfig metrics bind address', () => {
  test('is off by default', () => {
    expect(loadConfig({}, '/srv').metricsBindAddress).toBeUndefined();
  });

  test('is listed among the worker variables', () => {
    expect(AMLBATCH_ENVIRONMENT_VARIABLES).toContain('AMLBATCH_METRICS_BIND_ADDRESS');
  });

  test.each(['0.0.0.0:9464', '127.0.0.1:1', '[::]:9464', '[::1]:65535'])('accepts %s', (address) => {
    expect(loadConfig({ AMLBATCH_METRICS_BIND_ADDRESS: address }, '/srv').metricsBindAddress).toBe(address);
  });

  test.each(['localhost:9464', '9464', '0.0.0.0', '0.0.0.0:0', '0.0.0.0:65536', '::1:9464', '[localhost]:9464', '300.0.0.1:9464'])(
    'rejects %s',
    (address) => {
      expect(() => loadConfig({ AMLBATCH_METRICS_BIND_ADDRESS: address }, '/srv')).toThrow(
        `AMLBATCH_METRICS_BIND_ADDRESS=${address} is invalid; use an IP address and port such as 0.0.0.0:9464`,
      );
    },
  );
});
