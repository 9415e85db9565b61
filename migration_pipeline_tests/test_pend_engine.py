"""Engine pieces the Pend store needs: exact numerics of any width, bytea columns, string partitions."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg import sql

from migration_pipeline.core.rows import RowEncoder, sql_row_hash
from migration_pipeline.core.spec import Column, Unit

WIDE = [Decimal("123456789012345678901234567890123456"), Decimal("-0.000000000000000000000000000000001"),
        2**255 + 12345, Decimal("1E+77"), Decimal("1.50"), 0]


def test_numeric_copy_text_and_hash_are_exact_beyond_28_digits() -> None:
    # Decimal.normalize() under the default context rounded to 28 digits: the value was stored rounded.
    encoder = RowEncoder([Column("n", "numeric")])
    lines = [encoder.copy_line((v,), ()) for v in WIDE]
    assert lines == ["123456789012345678901234567890123456\n", "-0.000000000000000000000000000000001\n",
                     f"{2**255 + 12345}\n", "1" + "0" * 77 + "\n", "1.5\n", "0\n"]


def test_numeric_and_bytea_rows_hash_the_same_in_python_and_in_sql(database_url: str) -> None:
    columns = [Column("n", "numeric"), Column("b", "bytea"), Column("t", "text")]
    encoder = RowEncoder(columns)
    rows = [(v, bytes(range(i * 7 % 256)) * 3, f"r{i}") for i, v in enumerate(WIDE)] + [(None, None, None)]
    rows.append((Decimal(1), b"", "empty"))
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE t (n numeric, b bytea, t text)")
        with conn.cursor().copy("COPY t (n, b, t) FROM STDIN") as copy:
            copy.write("".join(encoder.copy_line(r, ()) for r in rows))
        stored = conn.execute("SELECT n, b, t FROM t ORDER BY t NULLS LAST").fetchall()
        in_sql = conn.execute(sql.SQL("SELECT coalesce(sum({}), 0) FROM t").format(sql_row_hash(columns))).fetchone()
    expected = sorted(((None if r[0] is None else Decimal(r[0]), r[1], r[2]) for r in rows),
                      key=lambda r: (r[2] is None, r[2] or ""))
    assert [(None if n is None else Decimal(n), None if b is None else bytes(b), t) for n, b, t in stored] == expected
    assert in_sql == (sum(encoder.row_hash(r) for r in rows),)


def test_a_unit_partition_is_a_string_and_a_numbered_one_is_still_a_shard() -> None:
    assert Unit(1, None, partition="07").shard == 7
    assert Unit(1, None, partition="2024-03-01").shard is None
    assert Unit(1, None).shard is None
