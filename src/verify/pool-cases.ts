// verify-isolation's pool cases: tenant b leaves state on its server and disconnects; tenant a then holds as many
// servers as it can at once and looks for that state on each.
import type pg from 'pg';
import { markerIn, observe } from './probe.js';
import type { Attempt, Connector, Facts, Observation } from './types.js';

interface PoolCase {
  name: string;
  /** Tenant b's statement that leaves the state behind. */
  plant: string;
  /** Tenant a's statement that finds it. */
  probe: string;
  /** A leak the probe's rows show other than by the marker. */
  leakIf?: (rows: unknown[]) => string | null;
}

function poolCases(f: Facts): PoolCase[] {
  const X = f.secret;
  return [
    {
      name: 'temporary table',
      plant: `CREATE TEMP TABLE ${X}_tmp AS SELECT '${X}_temprow'::text AS v`,
      probe: `SELECT * FROM ${X}_tmp`,
    },
    {
      name: 'session setting',
      plant: `SET ${X}.tag = '${X}_setting'`,
      probe: `SELECT current_setting('${X}.tag', true) AS v`,
    },
    {
      name: 'prepared statement',
      plant: `PREPARE ${X}_ps AS SELECT '${X}_prepared'::text AS v`,
      probe: `EXECUTE ${X}_ps`,
    },
    {
      name: 'advisory lock',
      plant: `SELECT pg_advisory_lock(${f.lockKey})`,
      probe: `SELECT pg_try_advisory_xact_lock_shared(${f.lockKey}) AS free`,
      leakIf: (rows) =>
        (rows[0] as { free?: unknown } | undefined)?.free === false ? "b's advisory lock still held" : null,
    },
    {
      name: 'WITH HOLD cursor',
      plant: `BEGIN; DECLARE ${X}_cur CURSOR WITH HOLD FOR SELECT '${X}_cursor'::text AS v; COMMIT`,
      probe: `FETCH ALL FROM ${X}_cur`,
    },
    {
      name: 'search_path and role after checkout',
      plant: `SELECT set_config('search_path', '${f.b.schema}', false) IS NULL AS x`,
      probe: `SELECT current_setting('search_path') AS search_path, current_user::text AS role, current_schema()::text AS s`,
    },
  ];
}

/**
 * Runs every pool case in one pass: b plants on one connection (its statements keep their server, parked for it)
 * and disconnects; then `width` clients of a each hold a transaction (so each holds a server of its own) and run
 * every probe under a savepoint. Two rounds.
 */
export async function runPoolCases(facts: Facts, connector: Connector, poolSize: number): Promise<Attempt[]> {
  const cases = poolCases(facts);
  const planted = new Map<string, Observation>();
  const bPids = new Set<number>();
  const b = await connector.connect('b');
  try {
    for (const c of cases) {
      planted.set(c.name, await observe(b, c.plant));
      const pid = await observe(b, 'SELECT pg_backend_pid() AS pid');
      if (pid.ok) bPids.add(Number((pid.rows[0] as { pid: number }).pid));
    }
  } finally {
    await b.end().catch(() => undefined);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));

  const found = new Map<string, string>();
  const reached = new Set<number>();
  const width = Math.max(1, Math.min(poolSize - 1, 8));
  for (let round = 0; round < 2; round++) {
    const clients: pg.Client[] = [];
    try {
      for (let i = 0; i < width; i++) clients.push(await connector.connect('a'));
      await Promise.all(
        clients.map(async (a) => {
          await a.query('BEGIN');
          const pid = Number((await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
          if (bPids.has(pid)) reached.add(pid);
          for (const c of cases) {
            await a.query('SAVEPOINT verify_probe');
            const o = await observe(a, c.probe);
            await a.query(o.ok ? 'RELEASE SAVEPOINT verify_probe' : 'ROLLBACK TO SAVEPOINT verify_probe');
            if (!o.ok || found.has(c.name)) continue;
            const seen = markerIn(facts, o.text);
            const flagged = seen !== null ? `saw "${seen}" on server ${pid}` : (c.leakIf?.(o.rows) ?? null);
            if (flagged !== null) found.set(c.name, flagged);
          }
          await a.query('COMMIT');
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  }

  const where =
    reached.size > 0
      ? `tenant a held b's server ${[...reached].join(', ')}`
      : `tenant a held ${width} server(s) at once, none of them b's last`;
  return cases.map((c): Attempt => {
    const head = { category: 'pool' as const, name: c.name, rule: 'reset' };
    const leak = found.get(c.name);
    if (leak !== undefined) return { ...head, outcome: 'leaked', detail: `${leak}; ${where}` };
    const p = planted.get(c.name)!;
    if (!p.ok) return { ...head, outcome: 'refused', sqlstate: p.code, detail: `b could not plant it: ${p.message}` };
    return { ...head, outcome: 'harmless', detail: `planted, not found; ${where}` };
  });
}
