"""The one builder of dynamic INSERT and UPDATE statements: names only from allow-lists."""

from __future__ import annotations

import pytest

from peerspark_rt.infra import sql

ALLOWED = frozenset({"title", "tags"})


def test_insert_and_update_take_only_allowed_columns() -> None:
    text, args = sql.insert("t", {"title": "a", "tags": ["x"]}, ALLOWED, suffix="RETURNING id")
    assert text == "INSERT INTO t (title, tags) VALUES ($1, $2) RETURNING id"
    assert args == ["a", ["x"]]
    text, args = sql.update(
        "t", {"tags": []}, ALLOWED, where="id = $1 AND owner = $2", where_args=[7, 8],
        also="updated_at = NOW()", returning="id",
    )  # fmt: skip
    assert (
        text
        == "UPDATE t SET tags = $3, updated_at = NOW() WHERE id = $1 AND owner = $2 RETURNING id"
    )
    assert args == [7, 8, []]


@pytest.mark.parametrize(
    "values", [{"title": "a", "role": "admin"}, {"title); DROP TABLE users; --": 1}, {}]
)
def test_a_column_outside_the_allow_list_raises(values: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="t:"):
        sql.insert("t", values, ALLOWED)
    with pytest.raises(ValueError, match="t:"):
        sql.update("t", values, ALLOWED, where="id = $1", where_args=[1])
    if values:
        with pytest.raises(ValueError, match="not allowed"):
            sql.excluded(list(values), ALLOWED)
