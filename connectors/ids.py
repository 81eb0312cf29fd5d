"""Deterministic id mappings for engines that cannot hold an id as it is.

FAISS holds only int64 ids; Qdrant only unsigned 64-bit ints and UUIDs. Any other id gets a mapped id
computed from its type and value (so re-running a migration maps it to the same place: upserts stay
idempotent) and the original goes into the payload under ORIGINAL_ID_KEY, from which our readers restore it.
"""
from __future__ import annotations

import hashlib
import uuid

import numpy as np

from connectors.base import ORIGINAL_ID_KEY
from connectors.errors import IdTypeError

# Fixed namespace: changing it would re-map every id of every existing migration.
V2V_NAMESPACE = uuid.UUID("6f1c1f0e-5b0a-4c36-9a43-2f6b1de0c2a1")
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def normalize_id(x):
    """numpy scalars -> python int/str; anything else is refused with a clear error."""
    if isinstance(x, (bool, np.bool_)):
        raise IdTypeError(f"Boolean id {x!r} is not a valid id.", "use integer or string ids.")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (str, np.str_)):
        return str(x)
    if isinstance(x, uuid.UUID):
        return str(x)
    raise IdTypeError(f"Id {x!r} of type {type(x).__name__} is not supported.", "use integer or string ids.")


def _key(x) -> str:
    # Type-tagged so that the int 7 and the string "7" never map to the same place.
    return f"i:{x}" if isinstance(x, int) else f"s:{x}"


def to_uuid(x) -> str:
    """Deterministic uuid5 of a (type-tagged) id."""
    return str(uuid.uuid5(V2V_NAMESPACE, _key(normalize_id(x))))


def to_int64(x) -> int:
    """Deterministic non-negative int64 for a string id (blake2b, 63 bits)."""
    h = hashlib.blake2b(_key(normalize_id(x)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & INT64_MAX


def is_uuid(x) -> bool:
    if not isinstance(x, str):
        return False
    try:
        return str(uuid.UUID(x)) == x.lower()
    except ValueError:
        return False


def fits_int64(x) -> bool:
    return isinstance(x, int) and -(2**63) <= x <= INT64_MAX


def fits_uint64(x) -> bool:
    return isinstance(x, int) and 0 <= x <= UINT64_MAX


def attach_original(payload: dict | None, original) -> dict:
    out = dict(payload or {})
    out[ORIGINAL_ID_KEY] = original
    return out


def restore_original(mapped_id, payload: dict | None):
    """(id the user sees, payload without our bookkeeping key)."""
    if payload and ORIGINAL_ID_KEY in payload:
        payload = dict(payload)
        return payload.pop(ORIGINAL_ID_KEY), payload
    return mapped_id, payload
