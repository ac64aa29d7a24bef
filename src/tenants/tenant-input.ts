// What a caller may pass a lifecycle verb: tenant ids (and the schema/role names they make), labels, issuers, statuses.
import { schemaForTenant } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import { TENANT_STATUSES, type TenantStatus } from './registry-store.js';
import { TenantError } from './tenant-error.js';

const MAX_LABEL = 200;
/** PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes) rather than refusing them. */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * The tenant's schema and role names for this config; throws TenantError invalid_id when the id does not match
 * tenancy.tenantPattern or the names would not fit PostgreSQL's identifier length.
 */
export function tenantNames(config: Config, id: string): { schema: string; role: string | null } {
  if (!new RegExp(config.tenancy.tenantPattern).test(id)) {
    throw new TenantError(
      'invalid_id',
      `tenant id ${JSON.stringify(id)} does not match tenancy.tenantPattern ${config.tenancy.tenantPattern}`,
    );
  }
  const schema = schemaForTenant(id, config.tenancy.schemaTemplate);
  const role = config.tenancy.roles ? schemaForTenant(id, config.tenancy.roleTemplate) : null;
  for (const name of [schema, role]) {
    if (name !== null && Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
      throw new TenantError(
        'invalid_id',
        `tenant id "${id}" makes the name "${name}", longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES} bytes`,
      );
    }
  }
  return { schema, role };
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) < 0x20) return true;
  return false;
}

/** A free-text value (tier, reason): 1 to 200 characters, none of them control characters; null/undefined pass. */
export function checkLabel(name: string, value: string | null | undefined): void {
  if (value === null || value === undefined) return;
  if (value.length === 0 || value.length > MAX_LABEL || hasControlCharacter(value)) {
    throw new TenantError(
      'invalid_argument',
      `${name} must be 1 to ${MAX_LABEL} characters without control characters`,
    );
  }
}

/** A --issuer value: a label, and with auth.issuers configured one of their names (a typo would lock the tenant out). */
export function checkIssuer(config: Config, value: string | null | undefined): void {
  checkLabel('issuer', value);
  const issuers = config.auth.issuers;
  if (value === null || value === undefined || issuers === undefined) return;
  if (!issuers.some((i) => i.name === value)) {
    throw new TenantError(
      'invalid_argument',
      `issuer "${value}" is not configured (auth.issuers: ${issuers.map((i) => i.name).join(', ')})`,
    );
  }
}

/** Validates a --status value. */
export function parseStatus(value: string): TenantStatus {
  if ((TENANT_STATUSES as readonly string[]).includes(value)) return value as TenantStatus;
  throw new TenantError('invalid_argument', `unknown status "${value}" (one of ${TENANT_STATUSES.join(', ')})`);
}
