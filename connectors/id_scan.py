"""Sampling for engines with random access: scan ids only, keep the n smallest seeded hashes, fetch those.

Gives exactly the rows `Store.sample` (base class) would give — same seeded id hash, same order — but
moves ids instead of vectors during the scan, which is ~100x less data for 384-d float32 vectors.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from connectors.base import Batch, id_hash_key
from connectors.errors import EmptyStoreError


def sample_by_id_scan(
    id_chunks: Iterable[tuple[list, list]],
    fetch: Callable[[list], Batch],
    n: int,
    seed: int,
    where: str,
) -> Batch:
    """`id_chunks` yields (engine_keys, user_ids); `fetch(engine_keys)` returns their rows (user ids).

    Memory: O(n + chunk). Raises EmptyStoreError when the store has no rows.
    """
    keep_keys = np.zeros(0, dtype=np.uint64)
    keep_engine: list = []
    keep_user: list = []
    seen = 0
    for engine_keys, user_ids in id_chunks:
        seen += len(user_ids)
        keys = np.concatenate([keep_keys, id_hash_key(user_ids, seed)])
        engine_all = keep_engine + list(engine_keys)
        user_all = keep_user + list(user_ids)
        order = np.argsort(keys, kind="stable")[:n]
        keep_keys = keys[order]
        keep_engine = [engine_all[i] for i in order]
        keep_user = [user_all[i] for i in order]
    if seen == 0:
        raise EmptyStoreError(f"{where} holds no vectors.", "point at a store that has vectors, or fill it first.")
    got = fetch(keep_engine)
    position = {u: i for i, u in enumerate(got.ids)}
    order = [position[u] for u in keep_user if u in position]
    payloads = [got.payloads[i] for i in order] if got.payloads is not None else None
    return Batch([got.ids[i] for i in order], np.ascontiguousarray(got.vectors[order]), payloads)
