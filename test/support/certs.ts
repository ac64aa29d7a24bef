// Self-signed certificates for TLS tests, made with the openssl CLI (node:crypto cannot issue certificates).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function selfSignedCert(commonName = 'localhost'): { cert: string; key: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pgtp-tls-'));
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      `subjectAltName=DNS:${commonName},IP:127.0.0.1`,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key, dir };
}
