"""Set-based statements for batches: one statement per batch, cheap for the worker's CPU.

A batch of 500 events is a handful of statements. With plain SQLAlchemy on PostgreSQL, an
``IN (...)`` list or a multi-row ``INSERT ... VALUES`` is a new statement text of thousands of
placeholders each time, which psycopg parses in Python (no statement cache at that size); that
cost as much CPU as the rest of registration's transaction. On PostgreSQL these helpers send one
array per column instead: ``= ANY(%(ids)s)`` and ``INSERT ... SELECT * FROM unnest(...)``, the
same short text every time, with the values adapted by psycopg's C code. On SQLite (where the
statements are cheap and bound parameters are limited) they fall back to chunked ``IN`` lists
and ``executemany``.

The PostgreSQL path hands values to the driver as they are: the tables that use it hold
strings, bytes, numbers, booleans, UUIDs, aware datetimes and JSON (dumped here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column

_CHUNK = 500  # keeps SQLite's IN lists under its bound-parameter limit


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: Session, column: Column[Any], values: Sequence[Any]) -> Iterator[ColumnElement[bool]]:
    """Conditions ``column`` is one of ``values``, to run one query each: a single
    ``= ANY(array)`` on PostgreSQL, chunked ``IN`` lists elsewhere; none for no values."""
    if not values:
        return
    if is_postgres(session):
        yield column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return
    for start in range(0, len(values), _CHUNK):
        yield column.in_(values[start:start + _CHUNK])


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in one statement."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(table.insert(), list(rows))
        return
    sql, params = _unnest_insert(session, table, rows)
    session.connection().exec_driver_sql(sql, params)


def insert_rows_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], id_column: str = "id"
) -> list[int]:
    """Insert ``rows`` and return the generated ``id_column`` values, in the order of ``rows``."""
    if not rows:
        return []
    if not is_postgres(session):
        column = table.c[id_column]
        return list(session.scalars(
            table.insert().returning(column, sort_by_parameter_order=True), list(rows)
        ))
    # ids taken from the sequence first, so their order is the rows' order by construction
    ids = [row[0] for row in session.connection().exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence(%(table)s, %(column)s)) "
        "FROM generate_series(1, %(n)s)",
        {"table": table.name, "column": id_column, "n": len(rows)},
    )]
    sql, params = _unnest_insert(
        session, table, [{id_column: i, **row} for i, row in zip(ids, rows, strict=True)]
    )
    session.connection().exec_driver_sql(sql, params)
    return ids


def _unnest_insert(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    dialect = session.get_bind().dialect
    names = list(rows[0])
    params: dict[str, Any] = {}
    arrays: list[str] = []
    for i, name in enumerate(names):
        column = table.c[name]
        values = [row[name] for row in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else json.dumps(v) for v in values]
        params[f"c{i}"] = values
        arrays.append(f"%(c{i})b::{column.type.compile(dialect=dialect)}[]")
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(n) for n in names)
    # names and types come from the Table's metadata, values travel as parameters
    sql = f"INSERT INTO {quote.format_table(table)} ({columns}) SELECT * FROM unnest({', '.join(arrays)})"  # noqa: S608
    return sql, params
