"""psycopg 3 type adapters through pg-tenant-proxy's catalog filter.

python3 psycopg_typeinfo.py PORT DBNAME TOKEN OWN OTHER

OWN and OTHER are tenant ids: the schema tenant_OWN holds OWN_mood (an enum) and OWN_point (a composite), and
tenant_OTHER holds the same types named after OTHER. Prints one "name=result" line per check;
test/integration/tool-introspection.test.ts asserts them.
"""
import enum
import sys

import psycopg
from psycopg.types.composite import CompositeInfo, register_composite
from psycopg.types.enum import EnumInfo, register_enum

PORT, DBNAME, TOKEN, OWN, OTHER = sys.argv[1:6]


def report(name, result):
    print(f"{name}={result}", flush=True)


def outcome(fetch):
    """What a fetch answered: its value, or the SQLSTATE of the error it raised."""
    try:
        return fetch()
    except psycopg.Error as err:
        return f"error {err.sqlstate}"


conn = psycopg.connect(host="127.0.0.1", port=PORT, user="app", dbname=DBNAME, password=TOKEN, sslmode="disable",
                       autocommit=True)

# The tenant's own enum: TypeInfo and EnumInfo find it, registered it round-trips as a Python Enum (and its array).
info = psycopg.types.TypeInfo.fetch(conn, f"{OWN}_mood")
report("typeinfo", f"{info.name} oid>0={info.oid > 0} array_oid>0={info.array_oid > 0}")
qualified = psycopg.types.TypeInfo.fetch(conn, f"tenant_{OWN}.{OWN}_mood")
report("typeinfo_qualified", f"{qualified.name} same={qualified.oid == info.oid}")

enum_info = EnumInfo.fetch(conn, f"{OWN}_mood")
report("enuminfo", f"{enum_info.name} {list(enum_info.labels)}")


class Mood(enum.Enum):
    happy = f"{OWN}_happy"
    sad = f"{OWN}_sad"


register_enum(enum_info, conn, Mood, mapping={m: m.value for m in Mood})
row = conn.execute("SELECT %s AS one, %s AS many, %s::text AS as_text", [Mood.sad, [Mood.happy, Mood.sad], Mood.happy]).fetchone()
report("enum_roundtrip", f"{row[0]!r} {row[1]!r} {row[2]}")
stored = conn.execute(f"SELECT mood FROM {OWN}_table ORDER BY id").fetchall()
report("enum_column", repr([r[0] for r in stored]))

# The tenant's own composite: CompositeInfo finds its fields, registered it round-trips as a Python object.
comp = CompositeInfo.fetch(conn, f"{OWN}_point")
report("compositeinfo", f"{comp.name} {list(comp.field_names)} types_ok={len(comp.field_types) == 3}")
register_composite(comp, conn)
factory = comp.python_type
point = conn.execute("SELECT %s AS p", [factory(1, 2, f"{OWN}_label")]).fetchone()[0]
report("composite_roundtrip", f"{type(point).__name__} x={point.x} y={point.y} label={point.label}")
server_side = conn.execute(f"SELECT ROW(3, 4, 'x')::{OWN}_point AS p").fetchone()[0]
report("composite_from_server", f"x={server_side.x} y={server_side.y} label={server_side.label}")

# Another tenant's types answer exactly as missing ones do, never with an error that confirms them: unqualified, as a
# type nobody has (None); qualified by its schema, as a name in a schema that does not exist (PostgreSQL's 3F000, which
# psycopg raises as it would on a direct connection).
for label, name in [
    ("other_enum_qualified", f"tenant_{OTHER}.{OTHER}_mood"),
    ("missing_enum_qualified", f"tenant_zzzz.{OTHER}_mood"),
    ("other_enum_unqualified", f"{OTHER}_mood"),
]:
    report(label, f"{outcome(lambda: psycopg.types.TypeInfo.fetch(conn, name))!r} "
                  f"{outcome(lambda: EnumInfo.fetch(conn, name))!r}")
report("other_composite_qualified", repr(outcome(lambda: CompositeInfo.fetch(conn, f"tenant_{OTHER}.{OTHER}_point"))))
report("other_composite_quoted", repr(outcome(lambda: CompositeInfo.fetch(conn, f'"tenant_{OTHER}"."{OTHER}_point"'))))

# The connection is still usable and idle, as TypeInfo.fetch leaves it.
report("after", f"{conn.execute('SELECT current_schema()').fetchone()[0]} {conn.info.transaction_status.name}")
conn.close()

# Inside an open transaction (psycopg's default, not autocommit) the fetch runs under a savepoint: a miss rolls back to
# it and the transaction goes on.
with psycopg.connect(host="127.0.0.1", port=PORT, user="app", dbname=DBNAME, password=TOKEN,
                     sslmode="disable") as tx:
    tx.execute("SELECT 1")
    missing = outcome(lambda: EnumInfo.fetch(tx, f"{OTHER}_mood"))
    qualified = outcome(lambda: EnumInfo.fetch(tx, f"tenant_{OTHER}.{OTHER}_mood"))
    own = EnumInfo.fetch(tx, f"{OWN}_mood")
    count = tx.execute(f"SELECT count(*) FROM {OWN}_table").fetchone()[0]
    report("in_transaction", f"{missing!r} {qualified!r} {own.name} rows={count} {tx.info.transaction_status.name}")
