// TenantIdentity: who a verified client is; schema naming from the tenant id and identifier quoting.

export interface TenantIdentity {
  /** Verified tenant id (matched tenancy.tenantPattern). */
  readonly tenantId: string;
  /** Schema name (unquoted) derived from tenancy.schemaTemplate. */
  readonly schema: string;
  /** Tenant database role the proxy SETs on pin (tenancy.roles), or null. */
  readonly role: string | null;
  /** Token subject, for audit; undefined when the token carries no sub. */
  readonly actor: string | undefined;
  /** Token expiry, seconds since the epoch. */
  readonly expiresAt: number;
  /** The token carries policy.bypassClaim = true: the SQL guard is skipped (and every statement audited). */
  readonly guardBypass: boolean;
  /** auth.issuers: the name of the issuer whose key verified the token; undefined with auth.jwt. */
  readonly issuer?: string;
  /** auth.issuers: that issuer's `tenants` is `registry`, so admission checks the tenant record's issuer. */
  readonly issuerByRegistry?: boolean;
}

/** Applies a `{tenant}` template (schema or role name). */
export function schemaForTenant(tenantId: string, template: string): string {
  return template.split('{tenant}').join(tenantId);
}

/** A regular expression matching every schema the template can produce, e.g. ^tenant_[a-z0-9_]{1,48}$. */
export function tenantSchemaShape(template: string, tenantPattern: string): RegExp {
  const tenant = tenantPattern.replace(/^\^/, '').replace(/\$$/, '');
  const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${template.split('{tenant}').map(escape).join(`(?:${tenant})`)}$`);
}

/** Quotes a name as a PostgreSQL identifier, always, so case and special characters survive exactly. */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('identifier contains NUL');
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a string as a PostgreSQL literal (standard_conforming_strings on: only quotes double). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('literal contains NUL');
  return value.includes('\\')
    ? ` E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
    : `'${value.replace(/'/g, "''")}'`;
}
