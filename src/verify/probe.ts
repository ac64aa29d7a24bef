// Runs one attack case as tenant a and classifies it: leaked, refused or harmless.
import type pg from 'pg';
import type { AttackCase, Attempt, CaseContext, Facts, Observation } from './types.js';

/** Runs `sql` and records what came back: every result's rows and column names, or the error. */
export async function observe(client: pg.Client, sql: string, values?: unknown[]): Promise<Observation> {
  try {
    const result = (await (values === undefined ? client.query(sql) : client.query(sql, values))) as
      pg.QueryResult | pg.QueryResult[];
    const results = Array.isArray(result) ? result : [result];
    const rows = results.flatMap((r) => r.rows as unknown[]);
    const fields = results.flatMap((r) => (r.fields ?? []).map((f) => f.name));
    return { ok: true, rows, fields, text: JSON.stringify({ fields, rows }) };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { ok: false, code: e.code ?? 'unknown', message: e.message ?? String(err) };
  }
}

const patterns = new WeakMap<Facts, RegExp>();

/** The first marker of tenant b that `text` contains (b's names only as whole identifiers: "acm" is not in "acme"). */
export function markerIn(facts: Facts, text: string): string | null {
  let pattern = patterns.get(facts);
  if (pattern === undefined) {
    const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const parts = [
      ...facts.markers.map(escape),
      ...facts.nameMarkers.map((n) => `(?<![a-z0-9_$])${escape(n)}(?![a-z0-9_$])`),
    ];
    pattern = new RegExp(parts.join('|'), 'i');
    patterns.set(facts, pattern);
  }
  return pattern.exec(text)?.[0] ?? null;
}

/** An observation with the oids and names that differ between attack and control replaced, for comparing the two. */
function shape(o: Observation, vary: string[]): string {
  if (!o.ok) return `error ${o.code}`;
  let text = o.text;
  for (const v of vary) text = text.split(v).join('\u0000');
  return text;
}

function short(text: string): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > 160 ? `${one.slice(0, 157)}...` : one;
}

export function classify(
  c: AttackCase,
  facts: Facts,
  o: Observation,
  control?: { o: Observation; vary: string[] },
): Omit<Attempt, 'category' | 'name' | 'rule'> {
  if (o.ok) {
    const seen = markerIn(facts, o.text);
    if (seen !== null) return { outcome: 'leaked', detail: `saw "${seen}": ${short(o.text)}` };
    const flagged = c.leakIf?.(o.rows) ?? null;
    if (flagged !== null) return { outcome: 'leaked', detail: flagged };
    if (c.leakOnSuccess === true) return { outcome: 'leaked', detail: "succeeded on tenant b's or shared state" };
  }
  if (control !== undefined && shape(o, control.vary) !== shape(control.o, control.vary)) {
    return {
      outcome: 'leaked',
      ...(o.ok ? {} : { sqlstate: o.code }),
      detail: `existing and missing objects answer differently (${describe(o)} vs ${describe(control.o)})`,
    };
  }
  if (!o.ok) {
    if (c.absent?.includes(o.code) === true) return { outcome: 'harmless', detail: `not there: ${short(o.message)}` };
    return { outcome: 'refused', sqlstate: o.code, detail: short(o.message) };
  }
  return { outcome: 'harmless', detail: `${o.rows.length} row(s), nothing of tenant b` };
}

function describe(o: Observation): string {
  return o.ok ? `${o.rows.length} row(s)` : `error ${o.code} "${short(o.message)}"`;
}

/** Runs a case on `client` (or a fresh connection) and classifies it; cleanup runs however it ended. */
export async function runCase(c: AttackCase, ctx: CaseContext, vary: string[]): Promise<Attempt> {
  const head = { category: c.category, name: c.name, rule: c.rule };
  const client = c.fresh === true ? await ctx.connector.connect('a') : ctx.a;
  try {
    if (c.run !== undefined) return { ...head, ...(await c.run(ctx)) };
    const o = await observe(client, c.sql!, c.values);
    const control = c.control === undefined ? undefined : { o: await observe(client, c.control, c.values), vary };
    return { ...head, ...classify(c, ctx.facts, o, control) };
  } catch (err) {
    return { ...head, outcome: 'refused', detail: `the case failed: ${(err as Error).message}` };
  } finally {
    for (const sql of c.cleanup ?? []) await client.query(sql).catch(() => undefined);
    if (client !== ctx.a) await client.end().catch(() => undefined);
  }
}
