"""Many-row INSERTs and UPDATEs: on PostgreSQL, one statement with an array per column.

SQLAlchemy runs an executemany INSERT with RETURNING as "insertmanyvalues": an
``INSERT ... VALUES (...), (...)`` text of 1,000 rows x 12 parameters per statement, which
psycopg parses anew every time (the text is too long for its cache). That parse was half
of a batch's write time on PostgreSQL. ``INSERT ... SELECT * FROM unnest(:a, :b, ...)`` is
the same short text whatever the number of rows, and each column travels as one array, in
psycopg's binary format. An executemany UPDATE becomes one ``UPDATE ... FROM unnest(...)``.

Strings are sent as ``text[]``, not ``varchar(n)[]``: a cast to ``varchar(n)`` cuts an
over-long value silently, while the INSERT into the column refuses it, as before. Every
item goes through its column type's bind processing (`UTCDateTime` refuses naive values).

On SQLite both stay a plain executemany: there the statement text costs nothing worth
measuring, and the time goes to SQLite's own inserts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, Dialect, String, Table, Text, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.types import TypeDecorator


class _BinaryList(list[Any]):
    """A list psycopg sends in the binary format: its text format is dumped item by item
    in Python, ten times slower (4.7 ms for 2,000 datetimes, against 0.3 ms)."""


@functools.cache
def binary_lists() -> None:
    """Have psycopg send `_BinaryList` in binary; only that class, so no other list anywhere
    changes format. Called when a PostgreSQL engine is made, before its first connection
    copies the adapters: psycopg costs a SQLite-only daemon about 10 MB of RSS to import."""
    import psycopg
    from psycopg.types.array import ListBinaryDumper

    psycopg.adapters.register_dumper(_BinaryList, ListBinaryDumper)


class _Array(TypeDecorator[list[Any]]):
    """An array parameter sent as a `_BinaryList`, its items processed as their column's."""

    impl = postgresql.ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        # Not ARRAY's own processor: it makes a plain list of the items.
        item_type = self.impl_instance.item_type  # type: ignore[attr-defined]
        item = item_type.dialect_impl(dialect).bind_processor(dialect)
        if item is None:
            return _BinaryList
        return lambda value: _BinaryList(map(item, value))


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: tuple[str, ...] = (),
    skip_conflicts: bool = False,
) -> list[Any]:
    """Insert ``rows`` (dicts with the same keys); the ``returning`` columns of the rows
    really inserted (with ``skip_conflicts``: ON CONFLICT DO NOTHING), in no set order."""
    if not rows:
        return []
    names = tuple(rows[0])
    if conn.dialect.name == "postgresql":
        binary_lists()  # in case the engine was not made by `create_engine`
        statement = _unnest_insert(table, names, returning, skip_conflicts)
        arrays = {name: [row[name] for row in rows] for name in names}
        result = await conn.execute(statement, arrays)
    else:
        statement = _many_insert(table, returning, skip_conflicts)
        result = await conn.execute(statement, list(rows))
    return list(result) if returning else []


@functools.cache
def _unnest_insert(
    table: Table, names: tuple[str, ...], returning: tuple[str, ...], skip_conflicts: bool
) -> Insert:
    """``INSERT INTO table (names) SELECT * FROM unnest(:name::type[], ...)``, built once."""
    arrays = [bindparam(name, type_=_Array(_item_type(table.c[name]))) for name in names]
    values = func.unnest(*arrays).table_valued(*names).render_derived()
    statement: Any = postgresql.insert(table).from_select(names, select(values))
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    return statement  # type: ignore[no-any-return]


@functools.cache
def _many_insert(table: Table, returning: tuple[str, ...], skip_conflicts: bool) -> Insert:
    # SQLite's: the only other dialect the store accepts.
    statement: Any = sqlite.insert(table) if skip_conflicts else insert(table)
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    return statement  # type: ignore[no-any-return]


def _item_type(column: Column[Any]) -> Any:
    return Text() if isinstance(column.type, String) else column.type


async def update_rows(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, key: tuple[str, ...]
) -> None:
    """Set the other columns of each of ``rows`` (dicts with the same keys) on the stored
    row with its ``key`` columns; a key given twice ends with its last row's values."""
    if not rows:
        return
    names = tuple(rows[0])
    if conn.dialect.name == "postgresql":
        binary_lists()  # in case the engine was not made by `create_engine`
        # With a key given twice, UPDATE ... FROM would apply either row: keep the last one,
        # the one an executemany leaves in place.
        rows = list({tuple(row[name] for name in key): row for row in rows}.values())
        statement = _unnest_update(table, names, key)
        await conn.execute(statement, {f"v_{name}": [row[name] for row in rows] for name in names})
    else:
        statement = _many_update(table, names, key)
        await conn.execute(statement, [{f"v_{k}": v for k, v in row.items()} for row in rows])


@functools.cache
def _unnest_update(table: Table, names: tuple[str, ...], key: tuple[str, ...]) -> Update:
    arrays = [bindparam(f"v_{name}", type_=_Array(_item_type(table.c[name]))) for name in names]
    values = func.unnest(*arrays).table_valued(*names).render_derived().alias("v")
    return (
        update(table)
        .where(*(table.c[name] == values.c[name] for name in key))
        .values({name: values.c[name] for name in names if name not in key})
    )


@functools.cache
def _many_update(table: Table, names: tuple[str, ...], key: tuple[str, ...]) -> Update:
    return (
        update(table)
        .where(*(table.c[name] == bindparam(f"v_{name}") for name in key))
        .values({name: bindparam(f"v_{name}") for name in names if name not in key})
    )
