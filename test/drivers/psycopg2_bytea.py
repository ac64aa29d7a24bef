"""psycopg2 through pg-tenant-proxy: python3 psycopg2_bytea.py PORT TOKEN TABLE

psycopg2 interpolates parameters into the statement text on the client, so a 10 MB bytea travels as a ~20 MB
'\\x…'::bytea literal inside a simple Query: the statement the guard must judge without parsing all of it.
Prints one "name=result" line per check; test/integration/large-statements.test.ts asserts them.
"""
import hashlib
import os
import sys

import psycopg2

PORT, TOKEN, TABLE = sys.argv[1], sys.argv[2], sys.argv[3]


def report(name, result):
    print(f"{name}={result}", flush=True)


conn = psycopg2.connect(host="127.0.0.1", port=PORT, user="app", dbname="pgtp_test", password=TOKEN, sslmode="disable")
data = os.urandom(10 * 1024 * 1024)
with conn, conn.cursor() as cur:
    cur.execute(f"INSERT INTO {TABLE} (id, data) VALUES (%s, %s)", (3, psycopg2.Binary(data)))
    report("statement_bytes", "over_20MB" if len(cur.query) > 20 * 1024 * 1024 else len(cur.query))
with conn, conn.cursor() as cur:
    cur.execute(f"SELECT data FROM {TABLE} WHERE id = %s", (3,))
    back = bytes(cur.fetchone()[0])
    report("bytea", back == data)
    report("sha256", hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest())
# A large statement is still judged: the literal does not hide what the rest of the text names.
try:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT length(%s) FROM tenant_b.items", (psycopg2.Binary(data),))
    report("refused", "no")
except psycopg2.Error as err:
    report("refused", err.pgcode)
conn.close()
