/**
 * Runs the Key Vault test double as its own process, for Jest's global setup and for the Python tests:
 *
 *   node dist/test/support/key-vault-double/main.js
 *
 * It makes a fresh self-signed certificate for 127.0.0.1 and localhost, starts the vault and the managed identity
 * token endpoint on free loopback ports, and prints one JSON line of {@link KeyVaultDoubleCoordinates} to stdout.
 * Logs go to stderr as JSON lines, without secret values or tokens. It stops on SIGTERM or SIGINT, and also when
 * its standard input closes, so a parent that dies without stopping it does not leave it running.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { createTestCertificate } from '../tls';
import {
  MANAGED_IDENTITY_HEADER_VALUE,
  TEST_IDENTITIES,
  TEST_TENANT_ID,
  startKeyVaultDoubleServer,
  type KeyVaultDoubleCoordinates,
} from './server';

function log(message: string, fields: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), message, ...fields })}\n`);
}

async function main(): Promise<void> {
  const certificate = createTestCertificate();
  const server = await startKeyVaultDoubleServer({ certPem: certificate.certPem, keyPem: certificate.keyPem, log });

  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    log('key vault double stopping', { reason });
    server
      .close()
      .finally(() => {
        rmSync(path.dirname(certificate.certPath), { recursive: true, force: true });
        process.exit(0);
      })
      .catch(() => undefined);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.stdin.once('end', () => stop('standard input closed'));
  process.stdin.resume();

  const coordinates: KeyVaultDoubleCoordinates = {
    vaultUrl: server.vaultUrl,
    caCertPath: certificate.certPath,
    managedIdentityEndpoint: server.managedIdentityEndpoint,
    managedIdentityHeader: MANAGED_IDENTITY_HEADER_VALUE,
    tenantId: TEST_TENANT_ID,
    identities: {
      reader: TEST_IDENTITIES.reader.clientId,
      administrator: TEST_IDENTITIES.administrator.clientId,
      noAccess: TEST_IDENTITIES.noAccess.clientId,
    },
  };
  log('key vault double started', { vaultUrl: server.vaultUrl, managedIdentityEndpoint: server.managedIdentityEndpoint });
  process.stdout.write(`${JSON.stringify(coordinates)}\n`);
}

main().catch((error: unknown) => {
  log('key vault double failed to start', { error: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
