// Client-facing TLS: the secure context built from tls.cert/tls.key, rebuilt on reload.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';

export function loadSecureContext(config: Config['tls']): tls.SecureContext | null {
  if (config.cert === undefined || config.key === undefined || config.mode === 'disable') return null;
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(config.cert);
  } catch (err) {
    throw new ConfigError(`cannot read certificate: ${(err as Error).message}`, 'tls.cert');
  }
  try {
    key = readFileSync(config.key);
  } catch (err) {
    throw new ConfigError(`cannot read private key: ${(err as Error).message}`, 'tls.key');
  }
  try {
    return tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch (err) {
    throw new ConfigError(
      `certificate and key do not form a usable TLS context: ${(err as Error).message}`,
      'tls.cert',
    );
  }
}
