// `tenants limits ID [--max-servers N] … [--clear]`: flags → a LimitsChange, and the effective limits as a table.
import { renderTable } from '../format/table.js';
import type { LimitKey, LimitOverrides } from '../limits/limits.js';
import type { LimitsChange, TenantLimitsResult } from '../limits/limits-verb.js';
import { UsageError, type Options } from './admin-command.js';

/** Each flag and the limit it sets; durations take units, counts are whole numbers. */
const FLAGS: ReadonlyArray<{ flag: string; key: LimitKey; duration: boolean }> = [
  { flag: 'max-servers', key: 'maxServers', duration: false },
  { flag: 'max-clients', key: 'maxClients', duration: false },
  { flag: 'max-waiting', key: 'maxWaiting', duration: false },
  { flag: 'statement-timeout', key: 'statementTimeoutMs', duration: true },
  { flag: 'idle-in-transaction-timeout', key: 'idleInTransactionTimeoutMs', duration: true },
  { flag: 'tx-per-second', key: 'transactionsPerSecond', duration: false },
];

export const LIMITS_OPTIONS: Options = {
  ...Object.fromEntries(FLAGS.map(({ flag }) => [flag, { type: 'string' }])),
  clear: { type: 'boolean' },
};

export const LIMITS_USAGE = `  limits ID [--max-servers N] [--max-clients N] [--max-waiting N] [--statement-timeout 30s]
         [--idle-in-transaction-timeout 60s] [--tx-per-second N] [--clear]
                                                     the tenant's own limits (0: no limit; "inherit": back to its
                                                     tier's or limits.default); --clear drops them all first;
                                                     prints the effective limits and where each comes from`;

const MAX_COUNT = 1_000_000_000;
const MAX_MS = 2_147_483_647;
const UNIT = { ms: 1, s: 1000, min: 60_000, m: 60_000, h: 3_600_000 } as const;

export function limitsChange(values: Record<string, unknown>): LimitsChange {
  const set: LimitOverrides = {};
  const inherit: LimitKey[] = [];
  for (const { flag, key, duration } of FLAGS) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    if (text.trim() === 'inherit') inherit.push(key);
    else set[key] = duration ? parseDurationMs(`--${flag}`, text) : parseCount(`--${flag}`, text);
  }
  return { set, inherit, clear: values['clear'] === true };
}

function parseCount(flag: string, text: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t) || Number(t) > MAX_COUNT)
    throw new UsageError(`${flag} takes a whole number from 0 (no limit) to ${MAX_COUNT}, or inherit (got "${text}")`);
  return Number(t);
}

/** 500ms, 30s, 10min (or 10m), 1h; a bare number is seconds, as the other tenants flags; 0 is no limit. */
function parseDurationMs(flag: string, text: string): number {
  const match = /^(\d+)(ms|s|min|m|h)?$/.exec(text.trim());
  const ms = match === null ? NaN : Number(match[1]) * UNIT[(match[2] ?? 's') as keyof typeof UNIT];
  if (!Number.isSafeInteger(ms) || ms > MAX_MS)
    throw new UsageError(
      `${flag}: invalid duration "${text}" (e.g. 500ms, 30s, 10min, 1h; 0 for no limit; at most 24 days; or inherit)`,
    );
  return ms;
}

export function renderLimits(result: TenantLimitsResult): string {
  const head =
    result.outcome === 'updated' ? `updated limits of tenant ${result.tenant}` : `limits of tenant ${result.tenant}`;
  const rows = FLAGS.map(({ key, duration }) => {
    const { value, source } = result.effective[key];
    const shown = value === 0 ? 'no limit' : duration ? formatMs(value) : String(value);
    const from = source === 'tier' ? `tier ${result.tier ?? ''}` : source === 'tenant' ? 'tenant override' : 'default';
    return [key, shown, from];
  });
  return `${head}${result.tier === null ? '' : ` (tier ${result.tier})`}\n${renderTable(['limit', 'value', 'from'], rows)}\n`;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}min`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
