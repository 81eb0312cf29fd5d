"""Payloads and original ids in JSON payload stores (Milvus dynamic fields, Qdrant, Qdrant Edge).

JSON stores cannot hold ints beyond 64 bits exactly: Milvus refuses the whole request, Qdrant Edge (and a
Qdrant server) silently turn them into floats. A top-level payload value (or a mapped original id under
`_v2v_id`) outside int64 is therefore stored as its decimal string, its field name listed under
`_v2v_bigint_fields`, and turned back into the same int on read. Such values nested inside lists/dicts,
and bytes anywhere, are refused with a StoreUsageError rather than stored wrongly.
"""
from __future__ import annotations

from typing import Any

from connectors import ids as idmap
from connectors.base import ORIGINAL_ID_KEY
from connectors.errors import StoreUsageError

BIGINT_FIELDS_KEY = "_v2v_bigint_fields"
# What an id-only scan must read to restore user ids.
PAYLOAD_FIELDS_FOR_ID = [ORIGINAL_ID_KEY, BIGINT_FIELDS_KEY]


def _is_big(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and not idmap.fits_int64(v)


def _check_nested(field: str, v: Any, engine: str) -> None:
    if isinstance(v, (bytes, bytearray)):
        raise StoreUsageError(f"Payload field {field!r} holds bytes, which {engine} JSON payloads cannot store.",
                         "encode bytes as base64 text in the source, or migrate to a Parquet/FAISS destination.")
    if _is_big(v):
        raise StoreUsageError(f"Payload field {field!r} holds an int beyond 64 bits inside a list or object; "
                         f"{engine} would not keep it exactly.", "store such numbers as strings in the source.")
    if isinstance(v, dict):
        for k, x in v.items():
            _check_nested(f"{field}.{k}", x, engine)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _check_nested(field, x, engine)


def encode_payload(payload: dict, engine: str) -> dict:
    """A payload ready for a JSON store (big top-level ints as strings, listed under BIGINT_FIELDS_KEY)."""
    big = []
    out = dict(payload)
    for k, v in payload.items():
        if _is_big(v):
            big.append(k)
            out[k] = str(v)
        elif isinstance(v, (dict, list, tuple, bytes, bytearray)):
            _check_nested(k, v, engine)
    if big:
        out[BIGINT_FIELDS_KEY] = big
    return out


def decode_payload(payload: dict | None) -> dict | None:
    if not payload or BIGINT_FIELDS_KEY not in payload:
        return payload
    out = dict(payload)
    for k in out.pop(BIGINT_FIELDS_KEY) or []:
        if isinstance(out.get(k), str):
            out[k] = int(out[k])
    return out


def attach_id(payload: dict, original, engine: str) -> dict:
    """The payload to store for a point whose id was mapped (original kept under `_v2v_id`)."""
    return encode_payload(idmap.attach_original(payload, original), engine)


def restore_id(point_id, payload: dict | None) -> tuple[Any, dict | None]:
    """(user id, payload without our keys); UUID objects from a binding become canonical strings."""
    user_id, payload = idmap.restore_original(point_id, decode_payload(payload))
    if not isinstance(user_id, (int, str)):
        user_id = str(user_id)
    return user_id, payload
