// A tenant's channel names on the server: each prefixed with a tag derived from the tenant's schema, one rule for the
// proxy (NOTIFY rewritten, LISTEN answered) and the catalog filter's pg_notify wrapper (see channel-sql.ts).
import { createHash } from 'node:crypto';
import { quoteIdent } from '../auth/identity.js';
import { BackendCode } from '../protocol/codes.js';
import { Writer } from '../protocol/writer.js';

/**
 * `pgtp:` + the first 16 hex digits of SHA-256(schema name) + `:` — the same length for every tenant, so whether a
 * channel name fits is known without knowing the tenant (the guard judges it once for all). PostgreSQL keeps channel
 * names below NAMEDATALEN (64 bytes): a tenant's name may have MAX_TENANT_CHANNEL_BYTES at most, and a longer one is
 * refused, never truncated into a name that could be another's.
 */
export const CHANNEL_PREFIX_BYTES = 22;
/** NAMEDATALEN - 1 minus the prefix. */
export const MAX_TENANT_CHANNEL_BYTES = 63 - CHANNEL_PREFIX_BYTES;

const prefixes = new Map<string, string>();

/** The server-side prefix of `schema`'s channels. */
export function channelPrefix(schema: string): string {
  let prefix = prefixes.get(schema);
  if (prefix === undefined) {
    prefix = `pgtp:${createHash('sha256').update(schema, 'utf8').digest('hex').slice(0, 16)}:`;
    if (prefixes.size > 10_000) prefixes.clear();
    prefixes.set(schema, prefix);
  }
  return prefix;
}

/** Why a tenant's channel name cannot be used (too long once prefixed, empty), or null. */
export function channelNameProblem(channel: string): string | null {
  if (channel.length === 0) return 'an empty channel name';
  const bytes = Buffer.byteLength(channel);
  if (bytes <= MAX_TENANT_CHANNEL_BYTES) return null;
  return `the channel name "${channel}" (${bytes} bytes; through pg-tenant-proxy a channel name has at most ${MAX_TENANT_CHANNEL_BYTES})`;
}

/** NOTIFY of the tenant's channel as the server runs it; the payload goes as an E'' literal, whatever the settings. */
export function notifyStatement(prefix: string, channel: string, payload: string | null): string {
  const literal =
    payload === null ? '' : `, E'${payload.replace(/\\/g, '\\\\').replace(/'/g, "''").replace(/\0/g, '')}'`;
  return `NOTIFY ${quoteIdent(prefix + channel)}${literal}`;
}

/**
 * What a LISTEN or UNLISTEN goes to the server as, when it travels inside a transaction or a pipeline: the same
 * command on a channel nobody notifies (tenants' channels all carry the prefix), so the server answers it as it would
 * the client's — its tag, 25P02 in a failed transaction, its refusal by PREPARE TRANSACTION — while the proxy's own
 * listening connection does the listening (see ClientChannels). The reset (UNLISTEN * / DISCARD ALL) clears it.
 */
export const LISTEN_STAND_IN = 'LISTEN pgtp_listen_stand_in';
export const UNLISTEN_STAND_IN = 'UNLISTEN pgtp_listen_stand_in';

/** NotificationResponse ('A'): the notifying backend's pid, the tenant's own channel name, the payload. */
export function encodeNotification(pid: number, channel: string, payload: string): Buffer {
  return new Writer(channel.length + payload.length + 16)
    .begin(BackendCode.NotificationResponse)
    .int32(pid)
    .cstring(channel)
    .cstring(payload)
    .end()
    .flush();
}
