// Statements far above policy.maxStatementBytes, as client-side-interpolating drivers send them, judged and run byte-exact.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { adminClient, printPgLogOnFailure } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

/** A table private to this file: other files count tenant_a's rows concurrently. */
const TABLE = 'large_statements';
let tp: TestProxy;
let client: pg.Client;

beforeEach(printPgLogOnFailure);

beforeAll(async () => {
  const admin = await adminClient();
  try {
    await admin.query(`DROP TABLE IF EXISTS tenant_a.${TABLE}`);
    await admin.query(`CREATE TABLE tenant_a.${TABLE} (id int PRIMARY KEY, body text, data bytea)`);
    await admin.query(`GRANT ALL ON tenant_a.${TABLE} TO ${inject('pg').proxyRole}`);
  } finally {
    await admin.end();
  }
  // The defaults: statements up to listen.maxMessageBytes (256 MB), parsed up to policy.maxStatementBytes (1 MB).
  tp = await startTestProxy();
  client = await tp.connect('a');
}, 60_000);

afterAll(async () => {
  await tp?.close();
  const admin = await adminClient();
  try {
    await admin.query(`DROP TABLE IF EXISTS tenant_a.${TABLE}`);
  } finally {
    await admin.end();
  }
});

describe('large statements through the guard (policy.maxStatementBytes bounds the skeleton, not the text)', () => {
  it('a 40 MB text literal inline in a simple query round-trips byte-exact (node-postgres)', async () => {
    // Every byte value a text can hold but NUL, quotes doubled as a client-side-interpolating driver writes them.
    const alphabet = Array.from({ length: 255 }, (_, i) => String.fromCharCode(i + 1)).join('') + 'é€😀';
    const body = alphabet.repeat(Math.ceil((40 << 20) / Buffer.byteLength(alphabet)));
    const sql = `INSERT INTO ${TABLE} (id, body) VALUES (1, '${body.replaceAll("'", "''")}') RETURNING octet_length(body) AS n`;
    expect(Buffer.byteLength(sql)).toBeGreaterThan(40 << 20);
    expect((await client.query(sql)).rows).toEqual([{ n: Buffer.byteLength(body) }]);
    const back = await client.query(`SELECT body FROM ${TABLE} WHERE id = 1`);
    expect(back.rows[0].body === body).toBe(true);
  }, 120_000);

  it('a 10 MB bytea as a hex literal round-trips byte-exact (node-postgres)', async () => {
    const data = randomBytes(10 << 20);
    const sql = `INSERT INTO ${TABLE} (id, data) VALUES (2, '\\x${data.toString('hex')}'::bytea)`;
    await client.query(sql);
    const back = await client.query(`SELECT data FROM ${TABLE} WHERE id = 2`);
    expect(Buffer.compare(back.rows[0].data as Buffer, data)).toBe(0);
  }, 120_000);

  it('is still judged: a long literal hides neither other names nor what a rule reads, and bodies stay bounded', async () => {
    const pad = 'x'.repeat(20 << 20);
    expect(await sqlstateOf(() => client.query(`SELECT length('${pad}') FROM tenant_b.items`))).toBe('42501');
    expect(await sqlstateOf(() => client.query(`SELECT '${pad}', set_config('search_path', 'tenant_b', false)`))).toBe(
      '42501',
    );
    // The literal a rule reads is put back and read: PostgreSQL skips the spaces of a name.
    expect(await sqlstateOf(() => client.query(`SELECT nextval('${' '.repeat(100_000)}tenant_b.seq')`))).toBe('42501');
    expect(await sqlstateOf(() => client.query(`SELECT nextval('${' '.repeat(2 << 20)}tenant_b.seq')`))).toBe('54000');
    // A DO body is code: parsed in full, so a long one is refused as a long statement is.
    expect(await sqlstateOf(() => client.query(`DO $$ BEGIN PERFORM '${pad}'; END $$`))).toBe('54000');
    // Many short literals: the skeleton itself is over the limit.
    const rows = Array.from({ length: 60_000 }, (_, i) => `(${i + 10}, 'v${i}')`).join(', ');
    expect(await sqlstateOf(() => client.query(`INSERT INTO ${TABLE} (id, body) VALUES ${rows}`))).toBe('54000');
    expect((await client.query('SELECT current_schema() AS s')).rows).toEqual([{ s: 'tenant_a' }]);
  }, 120_000);
});

/** psycopg2 (Debian's python3-psycopg2), seen by the system Python; skipped where it is missing. */
function psycopg2Python(): string | null {
  const python = '/usr/bin/python3';
  const probe = spawnSync(python, ['-c', 'import psycopg2'], { stdio: 'ignore' });
  return probe.status === 0 ? python : null;
}

const python = psycopg2Python();
describe.skipIf(python === null)('psycopg2 (python3-psycopg2)', () => {
  it('stores and reads back a 10 MB bytea it interpolates into the statement text', async () => {
    const script = fileURLToPath(new URL('../drivers/psycopg2_bytea.py', import.meta.url));
    const token = await tp.token('a');
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        python!,
        [script, String(tp.port), token, TABLE],
        { timeout: 110_000, maxBuffer: 1 << 20 },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${out}\n${errOut}`)) : resolve(out)),
      );
    });
    const results = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(results).toEqual({ statement_bytes: 'over_20MB', bytea: 'True', sha256: 'True', refused: '42501' });
  }, 120_000);
});
