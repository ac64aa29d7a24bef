// TenantError: every failure of a lifecycle verb as a code, a one-line message and the exit status the CLI gives it.
import { RegistryTooNewError } from './registry-schema.js';
import { TenantStatus, type TenantRecord } from './registry-store.js';

export type TenantErrorCode =
  /** The id does not match tenancy.tenantPattern (or makes a schema/role name PostgreSQL would truncate). */
  | 'invalid_id'
  /** A bad option value (an unknown status, an empty reason). */
  | 'invalid_argument'
  /** admin.url is not set. */
  | 'not_configured'
  | 'not_found'
  /** The tenant's status does not allow the verb (a tenant being deleted cannot be suspended). */
  | 'wrong_status'
  /** Something in the database is in the way (a tenant role name taken by a login role). */
  | 'conflict'
  /** A step of create failed; everything create did was undone. */
  | 'step_failed'
  /** The database could not be reached or dropped the connection. */
  | 'unreachable'
  | 'registry_too_new'
  /** Any other error PostgreSQL reported. */
  | 'database';

/** The steps of create, in order; a failure names one of them. */
export type CreateStep = 'role' | 'schema' | 'grants' | 'migrations' | 'record';

/** Problems with what was asked (exit status 2), as opposed to what happened (1). */
const USAGE_CODES: ReadonlySet<TenantErrorCode> = new Set(['invalid_id', 'invalid_argument', 'not_configured']);

/** Every failure of a lifecycle verb: a code to branch on, a one-line message, and for create the failed step. */
export class TenantError extends Error {
  constructor(
    readonly code: TenantErrorCode,
    message: string,
    readonly step?: CreateStep,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TenantError';
  }

  /** The CLI's exit status: 2 for usage and configuration errors, 1 for runtime failures. */
  get exitStatus(): 1 | 2 {
    return USAGE_CODES.has(this.code) ? 2 : 1;
  }
}

/** Connection-level failures (refused, reset, terminated, shutting down) versus errors PostgreSQL answered with. */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  if (code === undefined)
    return /Connection terminated|not queryable|ECONN|EPIPE|timeout/i.test((err as Error).message ?? '');
  return code.startsWith('08') || code.startsWith('57P') || code.startsWith('E');
}

/** Any error a verb met, as the TenantError callers branch on (a TenantError passes through unchanged). */
export function toTenantError(err: unknown): TenantError {
  if (err instanceof TenantError) return err;
  if (err instanceof RegistryTooNewError)
    return new TenantError('registry_too_new', err.message, undefined, { cause: err });
  const message = (err as Error).message ?? String(err);
  if (isConnectionError(err))
    return new TenantError('unreachable', `lost the database connection: ${message}`, undefined, { cause: err });
  return new TenantError('database', message, undefined, { cause: err });
}

/** The refusal every verb but resume shares: a tenant being deleted, or deleted, is not to be changed. */
export function refuseGone(tenant: TenantRecord): void {
  if (tenant.status === TenantStatus.Deleting)
    throw new TenantError('wrong_status', `tenant "${tenant.id}" is being deleted`);
  if (tenant.status === TenantStatus.Deleted)
    throw new TenantError('wrong_status', `tenant "${tenant.id}" was deleted; its id cannot be used again`);
}
