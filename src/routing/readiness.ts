// What /readyz says of each upstream: default through the registry's connection, the others through their own.
import type { TenantRegistry } from '../tenants/registry.js';
import type { Upstreams } from './upstreams.js';

export interface Check {
  ok: boolean;
  detail?: string;
}

/** `upstream` is the default's check (as before there were several); the others are `upstream:<name>`. */
export async function readinessChecks(
  registry: TenantRegistry,
  upstreams: Upstreams,
  timeoutMs: number,
): Promise<{ upstream: Check; others: Record<string, Check> }> {
  const answer = (p: Promise<void>): Promise<Check> =>
    p.then(
      () => ({ ok: true }),
      (err: unknown) => ({ ok: false, detail: (err as Error).message }),
    );
  const others = [...upstreams.all()].filter((u) => u !== upstreams.default);
  const [upstream, ...rest] = await Promise.all([
    answer(registry.ping(timeoutMs)),
    ...others.map((u) => answer(upstreams.ping(u, timeoutMs))),
  ]);
  return {
    upstream,
    others: Object.fromEntries(others.map((u, i) => [`upstream:${u.label}`, rest[i]!])),
  };
}
