"""Payload dicts <-> Arrow columns, shared by the Parquet store and the FAISS payload sidecar.

Round trips are exact for: str, int (any size), float, bool, None, bytes, and nested lists/dicts of
JSON values. Scalars of one Python type per field are stored natively (queryable Parquet columns).
A field that holds dicts or lists, mixes types across rows (e.g. int and str, or int and float) or
holds ints beyond int64 is stored as JSON text and listed in the schema metadata under
`v2v_json_fields`, so our readers decode it back to the same Python values (1 stays int, 1.0 float).
A field missing from some rows reads back as None in those rows (Parquet has no "absent" cell).
A payload field named like a reserved column (`id`, `vector`) is stored as `_v2v_field_<name>` and listed
under `v2v_renamed_fields`, and read back under its own name.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from connectors.errors import StoreUsageError

JSON_FIELDS_KEY = b"v2v_json_fields"
RENAMED_KEY = b"v2v_renamed_fields"
RENAME_PREFIX = "_v2v_field_"
_NATIVE_SCALARS = (str, bool, float, int, bytes)


def _plain(v: Any) -> Any:
    # numpy scalars (np.float32, np.int64, np.str_) come out of many pipelines; store their Python value.
    return v.item() if isinstance(v, np.generic) else v


def _json_column(name: str, values: list) -> pa.Array:
    try:
        return pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())
    except (TypeError, ValueError) as e:
        raise StoreUsageError(
            f"Payload field {name!r} holds a value that cannot be stored ({e}).",
            "keep payload values to str, int, float, bool, None, bytes, lists and dicts of those.",
        ) from None


def encode_column(name: str, values: list) -> tuple[pa.Array, bool]:
    """(Arrow array, stored-as-JSON flag) for one payload field."""
    values = [_plain(v) for v in values]
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values), type=pa.string()), False
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind in _NATIVE_SCALARS:
            try:
                return pa.array(values, type=pa.int64() if kind is int else None), False
            except (pa.ArrowInvalid, OverflowError):
                pass  # ints beyond int64: JSON keeps them exact
        elif kind not in (list, dict, tuple):
            try:  # datetime, date, Decimal, ...: Arrow has native types for these
                return pa.array(values), False
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                pass
    return _json_column(name, values), True


def payload_columns(payloads: Iterable[dict | None], n: int, reserved: Iterable[str] = ()
                    ) -> tuple[dict[str, pa.Array], list[str], dict[str, str]]:
    """(column name -> array in first-seen key order, columns stored as JSON, renamed column -> field)."""
    rows = [p or {} for p in payloads]
    if len(rows) != n:
        raise StoreUsageError(f"{len(rows)} payloads for {n} vectors.", "pass one payload dict (or None) per vector.")
    names: dict[str, None] = {}
    for p in rows:
        if not isinstance(p, dict):
            raise StoreUsageError(f"Payload {p!r} is not a dict.", "pass payloads as dicts of field -> value.")
        for k in p:
            if not isinstance(k, str):
                raise StoreUsageError(f"Payload field name {k!r} is not a string.", "use string field names.")
            names.setdefault(k, None)
    reserved = set(reserved)
    columns, json_fields, renamed = {}, [], {}
    for name in names:
        col = RENAME_PREFIX + name if name in reserved or name.startswith(RENAME_PREFIX) else name
        if col != name:
            renamed[col] = name
        arr, as_json = encode_column(name, [p.get(name) for p in rows])
        columns[col] = arr
        if as_json:
            json_fields.append(col)
    return columns, json_fields, renamed


def json_fields_of(schema: pa.Schema) -> set[str]:
    raw = (schema.metadata or {}).get(JSON_FIELDS_KEY)
    return set(json.loads(raw)) if raw else set()


def renamed_of(schema: pa.Schema) -> dict[str, str]:
    raw = (schema.metadata or {}).get(RENAMED_KEY)
    return dict(json.loads(raw)) if raw else {}


def with_payload_metadata(schema: pa.Schema, json_fields: list[str], renamed: dict[str, str],
                          extra: dict[bytes, bytes] | None = None) -> pa.Schema:
    meta = dict(schema.metadata or {})
    meta[JSON_FIELDS_KEY] = json.dumps(sorted(json_fields)).encode()
    meta[RENAMED_KEY] = json.dumps(renamed, sort_keys=True).encode()
    meta.update(extra or {})
    return schema.with_metadata(meta)


class PayloadDecoder:
    """Decodes the payload columns of one file's schema back to dicts with the original field names."""

    def __init__(self, schema: pa.Schema, columns: list[str]):
        self.columns = columns
        self._json = json_fields_of(schema)
        renamed = renamed_of(schema)
        self.fields = [renamed.get(c, c) for c in columns]

    def rows(self, table: pa.Table | pa.RecordBatch) -> list[dict]:
        cols = []
        for name in self.columns:
            values = table.column(name).to_pylist()
            if name in self._json:
                values = [None if v is None else json.loads(v) for v in values]
            cols.append(values)
        if not cols:
            return [{} for _ in range(table.num_rows)]
        return [dict(zip(self.fields, row)) for row in zip(*cols)]


def payload_table(base: dict[str, pa.Array], payloads: list, n: int, reserved: Iterable[str]) -> pa.Table:
    """`base` columns (id, vector, ...) followed by the payload columns, with our schema metadata."""
    columns, json_fields, renamed = payload_columns(payloads, n, reserved)
    table = pa.table({**base, **columns})
    return table.replace_schema_metadata(with_payload_metadata(table.schema, json_fields, renamed).metadata)


def _as_json_strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return _json_column(str(col), [_plain(v) for v in col.to_pylist()])


def concat_payload_tables(tables: list[pa.Table], keep: Iterable[str] = ("id",)) -> pa.Table:
    """Concatenate tables encoded per batch into one, with one encoding per field.

    A field that is JSON in some batch, or native with different Arrow types in different batches (int in
    one, float in another), becomes JSON everywhere (exact, see module doc); all-null columns take the
    type of the others; a field missing from a batch is null there. Usually nothing needs converting.
    """
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if len(tables) == 1:
        return tables[0]
    names: dict[str, None] = {}
    renamed: dict[str, str] = {}
    for t in tables:
        names.update(dict.fromkeys(t.column_names))
        renamed.update(renamed_of(t.schema))
    json_cols, types = set(), {}
    for name in names:
        present = [t for t in tables if name in t.column_names and t.column(name).null_count < t.num_rows]
        kinds = {t.schema.field(name).type for t in present}
        if name not in keep and (len(kinds) > 1 or any(name in json_fields_of(t.schema) for t in present)):
            json_cols.add(name)
        types[name] = pa.string() if name in json_cols or not kinds else next(iter(kinds))
    out = []
    for t in tables:
        cols = {}
        for name in names:
            if name not in t.column_names or t.column(name).null_count == t.num_rows:
                cols[name] = pa.nulls(t.num_rows, type=types[name])
            elif name in json_cols and name not in json_fields_of(t.schema):
                cols[name] = _as_json_strings(t.column(name))
            else:
                cols[name] = t.column(name)
        out.append(pa.table(cols))
    table = pa.concat_tables(out)
    return table.replace_schema_metadata(with_payload_metadata(table.schema, sorted(json_cols), renamed).metadata)
