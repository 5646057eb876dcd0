import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** PEM files of a throw-away certificate authority, a server certificate and a client certificate it signed. */
export interface TestPki {
  dir: string;
  caCertPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  clientCertPath: string;
  clientKeyPath: string;
  /** The DNS name in the server certificate; clients connect to 127.0.0.1 and verify this name instead. */
  serverName: string;
}

/**
 * Makes a CA and two leaf certificates with the `openssl` command. The leaves are separate from the CA because the
 * Temporal SDK's Rust core (rustls) rejects a CA certificate presented as a server certificate.
 */
export function createTestPki(serverName = 'amlbatch-test-server'): TestPki {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-pki-'));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };

  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=amlbatch-test-ca',
    '-keyout', file('ca-key.pem'), '-out', file('ca.pem'));

  const issue = (name: string, subject: string, extensions: string): void => {
    writeFileSync(file(`${name}.ext`), extensions);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', file(`${name}-key.pem`), '-out', file(`${name}.csr`));
    openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.pem'), '-CAkey', file('ca-key.pem'),
      '-CAcreateserial', '-days', '2', '-extfile', file(`${name}.ext`), '-out', file(`${name}.pem`));
  };
  issue('server', `/CN=${serverName}`, `subjectAltName=DNS:${serverName}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  issue('client', '/CN=amlbatch-test-worker', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');

  return {
    dir,
    caCertPath: file('ca.pem'),
    serverCertPath: file('server.pem'),
    serverKeyPath: file('server-key.pem'),
    clientCertPath: file('client.pem'),
    clientKeyPath: file('client-key.pem'),
    serverName,
  };
}
