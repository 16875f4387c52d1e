"""Dynamic INSERT and UPDATE statements for the columns a caller sets: the one builder.

Column names cannot be query parameters, so these statements are built from strings. Every
name comes from an explicit allow-list kept next to the table's SQL, and anything else raises
(`ValueError`, not an `assert`, which `python -O` would drop): no client-chosen key can become
SQL. Values are always parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any


def _checked(table: str, columns: Mapping[str, Any], allowed: Set[str]) -> list[str]:
    if not columns:
        raise ValueError(f"{table}: no columns to write")
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"{table}: columns not allowed here: {', '.join(sorted(unknown))}")
    return list(columns)


def insert(
    table: str, values: Mapping[str, Any], allowed: Set[str], *, suffix: str = ""
) -> tuple[str, list[Any]]:
    """`INSERT INTO table (...) VALUES ($1, ...) <suffix>` and its arguments."""
    columns = _checked(table, values, allowed)
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {suffix}"  # noqa: S608 (composed of constants; values are parameters)
    return sql.strip(), list(values.values())


def update(
    table: str,
    changes: Mapping[str, Any],
    allowed: Set[str],
    *,
    where: str,
    where_args: Sequence[Any],
    also: str = "",
    returning: str = "",
) -> tuple[str, list[Any]]:
    """`UPDATE table SET col = $n, ... [, also] WHERE <where> [RETURNING ...]`; `where` uses
    $1.. for `where_args`, and the changed values follow them."""
    columns = _checked(table, changes, allowed)
    first = len(where_args) + 1
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(columns, start=first))
    if also:
        sets += f", {also}"
    sql = f"UPDATE {table} SET {sets} WHERE {where}"  # noqa: S608 (composed of constants; values are parameters)
    if returning:
        sql += f" RETURNING {returning}"
    return sql, [*where_args, *changes.values()]


def excluded(columns: Sequence[str], allowed: Set[str], *, keep: Set[str] = frozenset()) -> str:
    """`col = EXCLUDED.col, ...` for an upsert's update, leaving out the `keep` columns."""
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"columns not allowed here: {', '.join(sorted(unknown))}")
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keep)
