"""Staging tables cloned from the live ones, the SQL that finishes them, and their integrity rules.

The live tables (created by sql/) are the single definition of each table: staging tables copy
their columns with `LIKE`, are loaded without indexes, and receive the live table's constraints,
indexes and triggers afterwards, read from the catalog. Records that would violate a constraint are
moved to the quarantine first, so that a bad record never aborts a load.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from functools import partial

import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping import checks, units
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import StoreSpec, TableSpec


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _set_search_path(conn: psycopg.Connection, schema: str) -> None:
    conn.execute("SELECT set_config('search_path', %s, true)", (f'"{schema}", pg_catalog',))


# Autovacuum would vacuum and analyze a staged table while the loaders are still writing it, on the
# same cores, and hold up the finishing ALTER TABLEs; the engine analyzes it itself once it is complete.
# Promotion hands the tables back to autovacuum (`enable_autovacuum`).
_NO_AUTOVACUUM = "autovacuum_enabled = false, toast.autovacuum_enabled = false"


def enable_autovacuum(conn: psycopg.Connection, schema: str) -> None:
    """Hand every table of `schema` back to autovacuum (the server's settings): promotion does this
    for the staged tables, which were created with it off."""
    for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall():
        conn.execute(sql.SQL("ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled)").format(
            qualified(schema, table)))


def create_staging_tables(conn: psycopg.Connection, spec: StoreSpec, bookkeeping: Sequence[str]) -> None:
    staging = sql.Identifier(spec.staging_schema)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(staging))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(staging))
    for table in spec.tables:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING COMMENTS)"
                " WITH (" + _NO_AUTOVACUUM + ")"
            ).format(qualified(spec.staging_schema, table.name), qualified(spec.schema, table.name))
        )
        for column in bookkeeping:
            kind = "bigint" if column == "_seq" else "text"
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} " + kind).format(
                    qualified(spec.staging_schema, table.name), sql.Identifier(column)
                )
            )


def _quarantine_removed(
    conn: psycopg.Connection,
    spec: StoreSpec,
    table: TableSpec,
    plan_id: str,
    run_id: str,
    reason: str,
    delete_sql: sql.Composable,
    message: sql.Composable,
) -> int:
    """Run a `DELETE ... RETURNING *` on a staged table and move what it removed to the quarantine."""
    return units.move_removed_to_quarantine(
        conn, delete_sql, None, store=spec.name, plan_id=plan_id, run_id=run_id, table=table.name, reason=reason,
        message=message, row_hash=sql_row_hash(table.columns))


def _key_columns(columns: Sequence[str], alias: str) -> list[sql.Composable]:
    return [sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns]


def _lower_column(column: str, alias: str) -> list[sql.Composable]:
    # lower() follows the database's LC_CTYPE, which differs between servers: under the "C" collation it folds
    # ASCII letters only, the same everywhere (as the live unique index does, sql/metagauge/021).
    return [sql.SQL('lower({}.{} COLLATE "C")').format(sql.Identifier(alias), sql.Identifier(column))]


def quarantine_duplicates(
    conn: psycopg.Connection, spec: StoreSpec, table: TableSpec, plan_id: str, run_id: str,
    enforced: Collection[tuple[str, ...]] = (),
) -> int:
    """Keep the first record (lowest `_seq`) of each natural key; quarantine the rest as duplicate_key.
    Keys in `enforced` are already unique (a unique index was built) and are not searched."""
    target = qualified(spec.staging_schema, table.name)
    key_sets: list[tuple[str, Callable[[str], list[sql.Composable]]]] = []
    for unique_key in table.unique_keys:
        if tuple(unique_key) in enforced:
            continue
        key_sets.append((", ".join(unique_key), partial(_key_columns, unique_key)))
    for column in table.unique_ci:
        key_sets.append((f"{column} (case-insensitive)", partial(_lower_column, column)))
    moved = 0
    for label, key in key_sets:
        aliases = [sql.Identifier(f"k{i}") for i in range(len(key("x")))]

        def on(alias: str, key: Callable[[str], list[sql.Composable]] = key) -> sql.Composable:
            return sql.SQL(", ").join(key(alias))

        delete = sql.SQL(
            """WITH dup AS (
                   SELECT {exprs_as} FROM {t} z GROUP BY {positions} HAVING count(*) > 1),
               firsts AS (
                   SELECT DISTINCT ON ({aliases}) {aliases}, x._seq AS first_seq, x._source_file AS first_file
                   FROM {t} x JOIN dup d ON ({x_exprs}) = ({d_aliases})
                   ORDER BY {aliases}, x._seq)
               DELETE FROM {t} y USING firsts f
               WHERE ({y_exprs}) = ({f_aliases}) AND y._seq > f.first_seq
               RETURNING y.*, f.first_file"""
        ).format(
            exprs_as=sql.SQL(", ").join(sql.SQL("{} AS {}").format(e, a) for e, a in zip(key("z"), aliases, strict=True)),
            t=target,
            positions=sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(aliases))),
            aliases=sql.SQL(", ").join(aliases),
            x_exprs=on("x"),
            d_aliases=sql.SQL(", ").join(sql.SQL("d.") + a for a in aliases),
            y_exprs=on("y"),
            f_aliases=sql.SQL(", ").join(sql.SQL("f.") + a for a in aliases),
        )
        # The kept record is named by file and locator; the key's value is never written (it may be PII).
        message = sql.SQL("{} || first_file").format(sql.Literal(f"same {label} as the record kept from "))
        moved += _quarantine_removed(conn, spec, table, plan_id, run_id, "duplicate_key", delete, message)
    return moved


def _live_constraints(conn: psycopg.Connection, spec: StoreSpec, table: str, kinds: str) -> list[tuple]:
    _set_search_path(conn, spec.schema)
    return conn.execute(
        """SELECT c.conname, pg_get_constraintdef(c.oid), c.contype, c.confdeltype,
                  c.confrelid::regclass::text,
                  ARRAY(SELECT a.attname FROM unnest(c.conkey) k JOIN pg_attribute a
                        ON a.attrelid = c.conrelid AND a.attnum = k ORDER BY array_position(c.conkey, k)),
                  ARRAY(SELECT a.attname FROM unnest(c.confkey) k JOIN pg_attribute a
                        ON a.attrelid = c.confrelid AND a.attnum = k ORDER BY array_position(c.confkey, k))
           FROM pg_constraint c
           WHERE c.conrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass AND c.contype = ANY(%s)
           ORDER BY c.conname""",
        (spec.schema, table, list(kinds)),
    ).fetchall()


def _add_constraints(conn: psycopg.Connection, spec: StoreSpec, table: str, constraints: Sequence[tuple]) -> None:
    # One ALTER TABLE per table and kind: PostgreSQL builds all its indexes / validates all its CHECKs in one pass.
    _set_search_path(conn, spec.staging_schema)
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(
        qualified(spec.staging_schema, table),
        sql.SQL(", ").join(sql.SQL("ADD CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition))
                           for name, definition, *_ in constraints)))


def _try_add_constraints(
    conn: psycopg.Connection, spec: StoreSpec, table: str, constraints: Sequence[tuple], error: type[Exception]
) -> bool:
    """Add constraints in a savepoint; False (and nothing changed) when a row violates one of them."""
    try:
        with conn.transaction():
            _add_constraints(conn, spec, table, constraints)
        return True
    except error:
        return False


def enforce_unique_keys(conn: psycopg.Connection, spec: StoreSpec, table: TableSpec) -> set[tuple[str, ...]]:
    """Build the live table's primary key and unique constraints on the staged table when no duplicate
    exists (the usual case: one index build instead of a GROUP BY per key); return the key column
    lists now enforced, which need no duplicate search (a key with a duplicate is left to the search)."""
    enforced = set()
    for constraint in _live_constraints(conn, spec, table.name, "pu"):
        # One at a time: a duplicate under one key must not stop the others from being built now.
        if _try_add_constraints(conn, spec, table.name, [constraint], psycopg.errors.UniqueViolation):
            enforced.add(tuple(constraint[5]))
    return enforced


def quarantine_check_violations(
    conn: psycopg.Connection, spec: StoreSpec, table: TableSpec, plan_id: str, run_id: str
) -> int:
    """Add the live table's CHECK constraints to the staged table, moving rows that would fail any of
    them to the quarantine first. Optimistic: the constraints are added first (one validating scan);
    only when a row violates one is the quarantining DELETE run (one scan) and the add repeated."""
    constraints = _live_constraints(conn, spec, table.name, "c")
    if not constraints:
        return 0
    if _try_add_constraints(conn, spec, table.name, constraints, psycopg.errors.CheckViolation):
        return 0
    checks = [(name, definition.removeprefix("CHECK ").removesuffix(" NOT VALID"))
              for name, definition, *_ in constraints]
    _set_search_path(conn, spec.staging_schema)
    fails = [sql.SQL("NOT coalesce({}, true)").format(sql.SQL(condition)) for _, condition in checks]
    delete = sql.SQL("DELETE FROM {} WHERE {} RETURNING *, CASE {} END AS violated").format(
        qualified(spec.staging_schema, table.name),
        sql.SQL(" OR ").join(fails),
        sql.SQL(" ").join(sql.SQL("WHEN {} THEN {}").format(f, sql.Literal(name))
                          for f, (name, _) in zip(fails, checks, strict=True)),
    )
    moved = _quarantine_removed(conn, spec, table, plan_id, run_id, "constraint_violation", delete,
                                sql.SQL("'violates CHECK constraint ' || violated"))
    _add_constraints(conn, spec, table.name, constraints)
    return moved


def resolve_orphans(
    conn: psycopg.Connection, spec: StoreSpec, table: TableSpec, plan_id: str, run_id: str, earlier: Iterable[str]
) -> int:
    """Apply the live foreign keys to parents loaded earlier: ON DELETE SET NULL references become NULL
    (recorded as an adjustment); any other dangling reference quarantines the record as `orphan`."""
    earlier = set(earlier)
    moved = 0
    for name, _definition, _kind, on_delete, parent, columns, parent_columns in _live_constraints(
        conn, spec, table.name, "f"
    ):
        parent_table = parent.split(".")[-1].strip('"')
        if parent_table not in earlier:
            continue  # a parent derived from this table later (e.g. users from wallets) cannot be missing
        child = qualified(spec.staging_schema, table.name)
        parent_ref = qualified(spec.staging_schema, parent_table)
        missing = sql.SQL("{not_null} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})").format(
            not_null=sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in columns),
            parent=parent_ref,
            join=sql.SQL(" AND ").join(
                sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
                for c, p in zip(columns, parent_columns, strict=True)
            ),
        )
        if on_delete == "n":
            row_hash = sql_row_hash(table.columns)
            before = conn.execute(
                sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} c WHERE {}").format(row_hash, child, missing)
            ).fetchone()
            assert before is not None
            if before[0] == 0:
                continue
            after = conn.execute(
                sql.SQL("WITH changed AS (UPDATE {} c SET {} WHERE {} RETURNING c.*)"
                        " SELECT coalesce(sum({}), 0) FROM changed").format(
                    child, sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(col)) for col in columns),
                    missing, row_hash,
                )
            ).fetchone()
            assert after is not None
            checks.record_adjustment(
                conn, spec.name, plan_id, table.name, "reference_set_null",
                f"{', '.join(columns)} pointed to a missing {parent_table} row and was set NULL ({name})",
                before[0], before[1] - after[0])
            continue
        delete = sql.SQL("DELETE FROM {} c WHERE {} RETURNING c.*").format(child, missing)
        moved += _quarantine_removed(
            conn, spec, table, plan_id, run_id, "orphan", delete,
            sql.Literal(f"{', '.join(columns)} refers to a {parent_table} record that is missing or quarantined"),
        )
    return moved


def drop_bookkeeping(conn: psycopg.Connection, spec: StoreSpec, table: str, bookkeeping: Sequence[str]) -> None:
    """Drop the loader's bookkeeping columns that the staged table still has (none: no statement, no lock)."""
    present = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f'"{spec.staging_schema}"."{table}"',))}
    columns = [c for c in bookkeeping if c in present]
    if columns:
        conn.execute(sql.SQL("ALTER TABLE {} {}").format(
            qualified(spec.staging_schema, table),
            sql.SQL(", ").join(sql.SQL("DROP COLUMN {}").format(sql.Identifier(c)) for c in columns)))


def add_missing_constraints(
    conn: psycopg.Connection, spec: StoreSpec, table: str, kinds: str, *, validate: bool = True
) -> None:
    """The live table's constraints of `kinds` that the staged table does not have yet, in one ALTER TABLE
    (CHECKs and foreign keys NOT VALID when not `validate`)."""
    present = {r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass", (f'"{spec.staging_schema}"."{table}"',))}
    constraints = [c for c in _live_constraints(conn, spec, table, kinds) if c[0] not in present]
    if not validate:
        constraints = [(name, f"{definition} NOT VALID", *rest) for name, definition, *rest in constraints]
    if constraints:
        _add_constraints(conn, spec, table, constraints)


def finish_staged_table(conn: psycopg.Connection, spec: StoreSpec, table: str, bookkeeping: Sequence[str]) -> None:
    """Everything of the live table but its foreign keys: keys, checks, indexes, triggers, identity past
    the loaded ids. Only what is missing is built, so a finish that stopped can run again.
    Loaded tables arrive here with their keys and checks; what remains takes no lock that blocks readers,
    so derived tables can be filled from them meanwhile."""
    staging = spec.staging_schema
    drop_bookkeeping(conn, spec, table, bookkeeping)
    add_missing_constraints(conn, spec, table, "pu")
    add_missing_constraints(conn, spec, table, "c")
    _set_search_path(conn, spec.schema)
    live = f"{spec.schema}.{table}"
    definitions = conn.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
           UNION ALL
           SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal""",
        (live, live),
    ).fetchall()
    built = {r[0] for r in conn.execute(
        """SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace
           UNION ALL SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass""",
        (f'"{staging}"', f'"{staging}"."{table}"'))}
    _set_search_path(conn, staging)
    live_name, staging_name = conn.execute(
        "SELECT quote_ident(%s), quote_ident(%s)", (spec.schema, staging)).fetchone() or ("", "")
    for name, definition in definitions:
        if name in built:
            continue
        # The catalog qualifies the table with the live schema: point it at the staged table.
        for on in (" ON ", " ON ONLY "):
            definition = definition.replace(f"{on}{live_name}.", f"{on}{staging_name}.", 1)
        conn.execute(sql.SQL(definition))
    for (column,) in conn.execute(
        """SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attidentity <> ''""",
        (f'"{staging}"."{table}"',),
    ).fetchall():
        conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1, false) FROM {}").format(
                sql.Literal(f'"{staging}"."{table}"'), sql.Literal(column), sql.Identifier(column),
                qualified(staging, table),
            )
        )
    conn.execute("SELECT set_config('search_path', 'public', true)")


def add_foreign_keys(conn: psycopg.Connection, spec: StoreSpec) -> list[tuple[str, str]]:
    """The live tables' foreign keys, once every staged table has its keys, added NOT VALID (no scan, so the
    locks they take are short); return (table, constraint) of every foreign key still to validate.
    Validating takes weaker locks (`validate_constraint`): several can run side by side."""
    for table in spec.tables:
        add_missing_constraints(conn, spec, table.name, "f", validate=False)
    return _foreign_keys(conn, spec.staging_schema, unvalidated_only=True)


def _foreign_keys(conn: psycopg.Connection, schema: str, *, unvalidated_only: bool = False) -> list[tuple[str, str]]:
    """(table, constraint) of the foreign keys of the tables of `schema`."""
    return conn.execute(
        "SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE k.connamespace = %s::regnamespace AND k.contype = 'f' AND NOT (%s AND k.convalidated)"
        " ORDER BY 1, 2", (f'"{schema}"', unvalidated_only)).fetchall()


def drop_foreign_keys(conn: psycopg.Connection, schema: str) -> None:
    """Every foreign key between the tables of `schema` (a finish that resumes rebuilds them last)."""
    for table, name in _foreign_keys(conn, schema):
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(qualified(schema, table), sql.Identifier(name)))


def validate_constraint(conn: psycopg.Connection, schema: str, table: str, name: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(qualified(schema, table), sql.Identifier(name)))
