import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCertificate {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

/**
 * Makes a self-signed certificate for `localhost` and `127.0.0.1` with the `openssl` command, for HTTPS test
 * servers (the Azure SDKs' bearer-token policy refuses plain http). Clients trust it through `tlsOptions.ca`.
 */
export function createTestCertificate(): TestCertificate {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-tls-'));
  const certPath = path.join(dir, 'cert.pem');
  const keyPath = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-keyout', keyPath, '-out', certPath,
      '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { certPath, keyPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}
