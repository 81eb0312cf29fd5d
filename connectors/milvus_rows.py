"""Milvus rows <-> Batches, and the filter expressions the Milvus connector sends.

A Batch carries the migrated vector in `vectors` and every other vector field in
`extra["vectors"][name]`, one value per row: a float32 array for a FLOAT_VECTOR field, {"indices": [...],
"values": [...]} for a SPARSE_FLOAT_VECTOR field (the form every connector uses), None where a row has none.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from connectors import ids as idmap
from connectors.base import EXTRA_VECTORS, Batch, other_vectors
from connectors.errors import IdTypeError, StoreUsageError
from connectors.json_ids import attach_id, encode_payload, restore_id

PARTITION = "partition"      # Batch.extra key: the Milvus partition every row of the batch came from


def literal(value) -> str:
    """A pk value as a Milvus expression literal (strings quoted, quotes and backslashes escaped)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(int(value))


def conjunction(*parts: str | None) -> str:
    """`(a) and (b)` of the non-empty parts; '' when none."""
    kept = [p for p in parts if p]
    if len(kept) <= 1:
        return kept[0] if kept else ""
    return " and ".join(f"({p})" for p in kept)


def engine_key(schema: dict, x, collection: str) -> tuple[Any, bool]:
    """(pk to store for user id x, whether the original must go to the payload)."""
    if schema["pk_str"]:
        if isinstance(x, int):
            return idmap.to_uuid(x), True
        if len(x.encode()) > schema["pk_max_length"]:
            raise IdTypeError(f"Id {x[:40]!r}... is longer than the key's max_length {schema['pk_max_length']}.",
                              "write to a new collection created with a larger id_max_length= option.")
        return x, False
    if isinstance(x, str):
        raise IdTypeError(f"Milvus collection {collection!r} has an INT64 key; string id {x[:40]!r} "
                          "cannot go there.", "write to a new collection created with id_type='str'.")
    if not idmap.fits_int64(x):
        raise IdTypeError(f"Id {x} does not fit Milvus INT64 keys.",
                          "write to a new collection created with id_type='str' (ids become strings).")
    return x, False


def sparse_from_milvus(value) -> dict | None:
    """Milvus gives a sparse row as {index: value} (or a scipy row); ours is {"indices", "values"}."""
    if value is None:
        return None
    if hasattr(value, "tocoo"):
        coo = value.tocoo()
        pairs = sorted(zip(coo.col.tolist(), coo.data.tolist()))
    else:
        pairs = sorted((int(k), float(v)) for k, v in dict(value).items())
    return {"indices": [int(k) for k, _ in pairs], "values": [float(v) for _, v in pairs]}


def sparse_to_milvus(value: dict) -> dict:
    return {int(i): float(v) for i, v in zip(value["indices"], value["values"])}


def rows_to_batch(rows: list, schema: dict, cursor: Any, partition: str | None = None) -> Batch:
    """Query results -> Batch (user ids restored, payload = every scalar and dynamic key)."""
    pk, vec = schema["pk"], schema["vector"]
    others = schema["other_vectors"]
    has_payloads = bool(schema["scalars"]) or schema["dynamic"]
    skip = {pk, vec, "$meta", *others}
    ids, payloads = [], []
    for row in rows:
        user_id, payload = restore_id(row[pk], {k: v for k, v in row.items() if k not in skip})
        ids.append(user_id)
        payloads.append(payload)
    vectors = np.asarray([row[vec] for row in rows], dtype=np.float32).reshape(len(rows), schema["dim"])
    extra: dict = {}
    if others:
        extra[EXTRA_VECTORS] = {
            name: [(sparse_from_milvus(r.get(name)) if kind == "sparse" else
                    None if r.get(name) is None else np.asarray(r[name], dtype=np.float32)) for r in rows]
            for name, kind in others.items()}
    if partition is not None:
        extra[PARTITION] = partition
    return Batch(ids, vectors, payloads if has_payloads else None, cursor, extra)


def batch_to_rows(batch: Batch, vectors: np.ndarray, schema: dict, engine_id, where: str) -> dict:
    """{pk: row} to upsert (a repeated id keeps its last row). engine_id(x) -> (pk, whether mapped)."""
    pk, vec = schema["pk"], schema["vector"]
    extras = other_vectors(batch, schema["other_vectors"], where)
    rows: dict = {}
    for i, x in enumerate(batch.ids):
        key, mapped = engine_id(idmap.normalize_id(x))
        payload = dict(batch.payloads[i] or {}) if batch.payloads is not None else {}
        for reserved in (pk, vec, *schema["other_vectors"]):
            if reserved in payload:
                raise StoreUsageError(f"Payload field {reserved!r} clashes with the collection's "
                                      f"{'key' if reserved == pk else 'vector'} field.",
                                      "rename that payload field in the source, or write to a new collection.")
        payload = (attach_id(payload, idmap.normalize_id(x), "Milvus") if mapped
                   else encode_payload(payload, "Milvus"))
        row = {pk: key, vec: vectors[i], **payload}
        for name, kind in schema["other_vectors"].items():
            value = extras.get(name, [None] * len(batch))[i] if name in extras else None
            if value is None:
                raise StoreUsageError(f"Row {x!r} has no value for vector field {name!r}; Milvus needs one in "
                                      "every row.", f"drop it with --drop-vector {name}, or write to a "
                                      "collection without that field.")
            row[name] = sparse_to_milvus(value) if kind == "sparse" else np.asarray(value, dtype=np.float32)
        rows[key] = row
    return rows


def row_bytes(row: dict, schema: dict) -> int:
    """About what a row weighs in a request (vectors as float32, the rest as JSON)."""
    size = 4 * schema["dim"] + len(str(row[schema["pk"]])) + 16
    for name, kind in schema["other_vectors"].items():
        value = row.get(name)
        size += 12 * len(value) if kind == "sparse" else 4 * int(np.size(value))
    skip = {schema["pk"], schema["vector"], *schema["other_vectors"]}
    return size + len(json.dumps({k: v for k, v in row.items() if k not in skip}, default=str))
