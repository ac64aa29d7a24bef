"""psycopg 3 through pg-tenant-proxy: python3 psycopg_scenario.py PORT TOKEN_A TOKEN_B SUFFIX

Prints one "name=result" line per scenario; test/integration/drivers.test.ts asserts them.
"""
import io
import os
import sys
import threading
import time

import psycopg
from psycopg import errors

PORT, TOKEN_A, TOKEN_B, SUFFIX = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def connect(token, **kwargs):
    conn = psycopg.connect(host="127.0.0.1", port=PORT, user="app", dbname="pgtp_test", password=token,
                           sslmode="disable", **kwargs)
    # Server-side prepared statements from the first execution on (psycopg's default waits for the fifth).
    conn.prepare_threshold = 0
    return conn


def report(name, result):
    print(f"{name}={result}", flush=True)


# 1. Prepared statements reused across transactions by 8 connections of two tenants.
outcomes = {}
lock = threading.Lock()


def worker(index):
    is_a = index % 2 == 0
    result = "ok"
    try:
        with connect(TOKEN_A if is_a else TOKEN_B) as conn:
            for _ in range(50):
                with conn.transaction():
                    row = conn.execute("SELECT current_schema(), count(*) FROM items WHERE id <= %s", (3,),
                                       prepare=True).fetchone()
                if row != ("tenant_a" if is_a else "tenant_b", 2 if is_a else 3):
                    result = f"wrong {row}"
                    break
    except Exception as exc:  # noqa: BLE001 - reported, asserted by the test
        result = f"error {type(exc).__name__}: {exc}"
    with lock:
        outcomes[result] = outcomes.get(result, 0) + 1


threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
report("prepared", outcomes)

with connect(TOKEN_A, autocommit=True) as conn:
    table = f"psy_{SUFFIX}"
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text, b bytea)")
    try:
        # 2. Pipeline mode with an error in the middle: the statements up to the pipeline's Sync form one implicit
        # transaction, so the error takes the insert before it down too and the one after it never runs.
        failed = "none"
        try:
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} (id, v) VALUES (1, 'one')")
                conn.execute(f"INSERT INTO {table} (id, v) VALUES (1, 'dup')")
                conn.execute(f"INSERT INTO {table} (id, v) VALUES (2, 'two')")
        except errors.UniqueViolation as exc:
            failed = exc.sqlstate
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        report("pipeline", f"{failed} then {count}")

        # 3. Cancel a long statement from another thread; the connection stays usable.
        started = time.monotonic()
        timer = threading.Timer(0.3, conn.cancel)
        timer.start()
        cancelled = "not cancelled"
        try:
            conn.execute("SELECT pg_sleep(10)")
        except errors.QueryCanceled as exc:
            cancelled = exc.sqlstate
        elapsed = time.monotonic() - started
        report("cancel", f"{cancelled} fast={elapsed < 5} after={conn.execute('SELECT 41 + 1').fetchone()[0]}")

        # 4. COPY in and out.
        rows = "".join(f"{i}\tcopied-{i}\n" for i in range(1000, 6000))
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, v) FROM STDIN") as copy:
                copy.write(rows)
            out = io.StringIO()
            with cur.copy(f"COPY (SELECT id, v FROM {table} WHERE id >= 1000 ORDER BY id) TO STDOUT") as copy:
                for block in copy:
                    out.write(bytes(block).decode())
        report("copy", f"same={out.getvalue() == rows}")

        # 5. A 10 MB bytea round trip.
        big = os.urandom(10 * 1024 * 1024)
        conn.execute(f"INSERT INTO {table} (id, b) VALUES (1, %s)", (big,))
        report("bytea", bytes(conn.execute(f"SELECT b FROM {table} WHERE id = 1").fetchone()[0]) == big)

        # 6. Notices reach the connection that raised them.
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from %', current_schema(); END $$")
        report("notice", notices)

        # 7. The guard's refusal is an ordinary psycopg error with its SQLSTATE.
        try:
            conn.execute("SELECT count(*) FROM tenant_b.items")
            report("refused", "allowed")
        except psycopg.Error as exc:
            report("refused", exc.sqlstate)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


# 8. psycopg's statement cache rotates: past prepared_max it sends SQL "DEALLOCATE _pg3_N" for the statement it evicts
# (and "DEALLOCATE ALL" when it closes), naming statements it prepared with a protocol Parse, in and outside a
# transaction and in a pipeline. Every answer must still be right.
with connect(TOKEN_A, autocommit=True) as conn:
    conn.prepared_max = 2
    answers = []
    try:
        for round_ in range(3):
            for i in range(5):
                answers.append(conn.execute(f"SELECT {i} + %s", (round_,), prepare=True).fetchone()[0])
        with conn.transaction():
            for i in range(5, 9):
                answers.append(conn.execute(f"SELECT {i} + %s", (0,), prepare=True).fetchone()[0])
        with conn.pipeline():
            cursors = [conn.execute(f"SELECT {i} * %s", (10,), prepare=True) for i in range(4)]
        answers.extend(c.fetchone()[0] for c in cursors)
        # The statement evicted first is prepared again under the same text: nothing stale is left of it.
        answers.append(conn.execute("SELECT 0 + %s", (7,), prepare=True).fetchone()[0])
        expected = [i + r for r in range(3) for i in range(5)] + list(range(5, 9)) + [0, 10, 20, 30, 7]
        report("rotate", f"same={answers == expected} n={len(answers)}")
    except psycopg.Error as exc:
        report("rotate", f"{exc.sqlstate} {exc} after {len(answers)}")
