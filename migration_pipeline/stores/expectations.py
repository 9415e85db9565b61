"""Expectation builders shared by the stores (plain data; `quality.gx` turns them into GX 1.x objects).

Queries select key columns only, never a secret column, so no secret reaches Data Docs.
"""

from __future__ import annotations

from collections.abc import Sequence

from migration_pipeline.core.spec import Expectation


def rows(table: str | None = None) -> Expectation:
    """The staged table has exactly the rows reconciliation expects (source - quarantined)."""
    return Expectation("ExpectTableRowCountToEqual", {"value": "$expected_rows"})


def not_null(*columns: str) -> tuple[Expectation, ...]:
    return tuple(Expectation("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns)


def unique(*columns: str) -> tuple[Expectation, ...]:
    return tuple(Expectation("ExpectColumnValuesToBeUnique", {"column": c}) for c in columns)


def compound_unique(columns: Sequence[str]) -> Expectation:
    return Expectation("ExpectCompoundColumnsToBeUnique", {"column_list": list(columns)})


def in_set(column: str, values: Sequence[str]) -> Expectation:
    return Expectation("ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(values)})


def matches(column: str, regex: str) -> Expectation:
    return Expectation("ExpectColumnValuesToMatchRegex", {"column": column, "regex": regex})


def hex_digits(column: str, prefix: str, digits: int) -> tuple[Expectation, ...]:
    """`prefix` then exactly `digits` hex digits, as two expectations: PostgreSQL's regex engine is ten
    times slower on the one pattern with a bounded repetition ({40}) than on '+' and a length."""
    return (
        Expectation("ExpectColumnValuesToMatchRegex", {"column": column, "regex": f"^{prefix}[0-9a-fA-F]+$"}),
        Expectation("ExpectColumnValueLengthsToEqual", {"column": column, "value": len(prefix) + digits}),
    )


def between(column: str, min_value: float | None = None, max_value: float | None = None) -> Expectation:
    kwargs: dict[str, object] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    return Expectation("ExpectColumnValuesToBeBetween", kwargs)


def unexpected_rows(description: str, query: str) -> Expectation:
    """Rows returned by `query` ({batch} is the table, $schema the staging schema) are failures."""
    return Expectation("UnexpectedRowsExpectation", {"description": description, "unexpected_rows_query": query})


def orphans(child_column: str, parent: str, parent_column: str) -> Expectation:
    # GX substitutes {batch} with an aliased subquery, so the batch is wrapped once more to name it.
    return Expectation(
        "UnexpectedRowsExpectation",
        {
            "description": f"every {child_column} has its {parent} row",
            "unexpected_rows_query": (
                f"SELECT c.ref FROM (SELECT {child_column} AS ref FROM {{batch}}) c WHERE c.ref IS NOT NULL"
                f" AND NOT EXISTS (SELECT 1 FROM $schema.{parent} p WHERE p.{parent_column} = c.ref)"
            ),
        },
    )
