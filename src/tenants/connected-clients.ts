// `tenants show`'s client count: what the running proxy's admin view says, or why it cannot say.
import { fetchStatus } from '../admin/status-client.js';
import type { Config } from '../config/schema.js';
import type { TenantDetails } from './lifecycle-types.js';

export async function connectedClients(
  config: Config,
  id: string,
): Promise<Pick<TenantDetails, 'connectedClients' | 'connectedClientsNote'>> {
  if (!config.metrics.enabled || config.metrics.adminToken === undefined) {
    return {
      connectedClients: null,
      connectedClientsNote: 'no admin view to ask: metrics.enabled and metrics.adminToken are not both set',
    };
  }
  try {
    const status = await fetchStatus(config);
    return { connectedClients: status.tenants.find((t) => t.tenant === id)?.clients ?? 0 };
  } catch (err) {
    return { connectedClients: null, connectedClientsNote: (err as Error).message };
  }
}
