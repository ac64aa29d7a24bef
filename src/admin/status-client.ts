// Asks a running proxy for its admin view over the metrics port (`pg-tenant-proxy status`, `tenants show`).
import type { StatusSnapshot } from './status.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';

export async function fetchStatus(config: Config): Promise<StatusSnapshot> {
  if (!config.metrics.enabled)
    throw new ConfigError('metrics.enabled is false: the proxy serves no admin view', 'metrics.enabled');
  const token = config.metrics.adminToken;
  if (token === undefined)
    throw new ConfigError('metrics.adminToken is not set: the admin view is off', 'metrics.adminToken');
  // A proxy listening on every address is still reached through loopback.
  const host = config.metrics.host === '0.0.0.0' || config.metrics.host === '::' ? '127.0.0.1' : config.metrics.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.metrics.port}/admin/status`;
  let response: Response;
  try {
    response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new Error(
      `cannot reach the proxy at ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`,
      { cause: err },
    );
  }
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${(await response.text()).trim()}`);
  return (await response.json()) as StatusSnapshot;
}
