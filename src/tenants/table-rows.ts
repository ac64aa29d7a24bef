// A table's rows as jsonl lines: read out in a stable order (export, and import's read-back check), and loaded in.
import { readFileSync } from 'node:fs';
import { quoteIdent } from '../auth/identity.js';
import type { SqlRunner } from './provision.js';

/** Rows per FETCH on the way out, and per INSERT on the way in. */
const FETCH = 1000;

/**
 * One table's rows as jsonl lines, in a stable order (by the line's text, byte-wise) so a copy of the same data
 * gives the same bytes: the checksum compares data, not physical order. Calls `line` for each.
 */
export async function eachLine(
  db: SqlRunner,
  table: string,
  line: (text: string) => Promise<void> | void,
): Promise<number> {
  const cursor = quoteIdent(`pgtp_export_${table}`.slice(0, 63));
  await db.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS line FROM ${quoteIdent(table)} t ORDER BY row_to_json(t)::text COLLATE "C"`,
  );
  let n = 0;
  for (;;) {
    const { rows } = await db.query(`FETCH ${FETCH} FROM ${cursor}`);
    for (const row of rows as Array<{ line: string }>) {
      await line(row.line);
      n++;
    }
    if (rows.length < FETCH) break;
  }
  await db.query(`CLOSE ${cursor}`);
  return n;
}

/** Inserts a jsonl file's rows, a thousand at a time, into the table (generated columns left to compute). */
export async function loadTable(db: SqlRunner, table: string, file: string): Promise<number> {
  const { rows: cols } = await db.query(
    `SELECT quote_ident(attname) AS name, attidentity = 'a' AS always FROM pg_catalog.pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [quoteIdent(table)],
  );
  const columns = (cols as Array<{ name: string; always: boolean }>).map((c) => c.name).join(', ');
  const overriding = (cols as Array<{ always: boolean }>).some((c) => c.always) ? ' OVERRIDING SYSTEM VALUE' : '';
  const sql = `INSERT INTO ${quoteIdent(table)} (${columns})${overriding} SELECT ${columns} FROM pg_catalog.json_populate_recordset(NULL::${quoteIdent(table)}, $1::json)`;
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
  for (let i = 0; i < lines.length; i += FETCH) await db.query(sql, [`[${lines.slice(i, i + FETCH).join(',')}]`]);
  return lines.length;
}
