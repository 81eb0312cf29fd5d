"""Known pairs: vectors of the same texts under the old and the new model.

One reader for `--pairs FILE` (Parquet: list<float> columns `source` and `target`, optional `id` of the
source row), and one way to find pairs by id in two stores (ids present in both are the same texts).
train and report both use these.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectors import Batch
from connectors.errors import DimensionMismatchError, StoreNotFoundError, UnreadableStoreError


@dataclass
class Pairs:
    x: np.ndarray                 # old-model vectors (n, d_src)
    y: np.ndarray                 # new-model vectors of the same texts (n, d_tgt)
    ids: list | None = None       # source ids, when known
    payloads: list | None = None  # source payloads, when known
    origin: str = "parquet"   # report.json names: "parquet" (a --pairs file) or "target-store" (ids)

    def __len__(self) -> int:
        return len(self.x)

    def head(self, n: int) -> "Pairs":
        cut = (lambda v: None if v is None else v[:n])
        return Pairs(self.x[:n], self.y[:n], cut(self.ids), cut(self.payloads), self.origin)


def _vectors(table, col: str, p: Path) -> np.ndarray:
    import pyarrow as pa

    values = table.column(col).combine_chunks()
    try:
        flat = np.asarray(values.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        lengths = set(values.value_lengths().to_pylist()) if len(values) else {0}
    except (AttributeError, pa.ArrowInvalid, TypeError, ValueError):
        raise UnreadableStoreError(f"Pairs file {p}: column {col!r} is not a list of floats.",
                                   "store each vector as list<float>.") from None
    if len(lengths) != 1 or None in lengths:
        raise UnreadableStoreError(f"Pairs file {p}: column {col!r} mixes vector lengths {sorted(lengths)}.",
                                   "give every row the model's full dimension.")
    return flat.reshape(len(values), lengths.pop())


def read_pairs(path: str | os.PathLike, source_dim: int | None = None, target_dim: int | None = None) -> Pairs:
    """Read a pairs file; when dims are given, refuse pairs of other models with the fix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise StoreNotFoundError(f"Pairs file {p} does not exist.", "fix --pairs (a Parquet file).")
    try:
        names = pq.read_schema(p).names
        table = pq.read_table(p, columns=[c for c in ("source", "target", "id") if c in names])
    except (pa.ArrowInvalid, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableStoreError(f"Pairs file {p} is not readable as Parquet ({first}).",
                                   "write it with list<float> columns `source` and `target`.") from None
    missing = {"source", "target"} - set(table.column_names)
    if missing:
        raise UnreadableStoreError(f"Pairs file {p} lacks column(s) {sorted(missing)}.",
                                   "write it with list<float> columns named source and target (same rows, "
                                   "same texts).")
    x, y = _vectors(table, "source", p), _vectors(table, "target", p)
    if (source_dim is not None and x.shape[1] != source_dim) or (target_dim is not None and y.shape[1] != target_dim):
        raise DimensionMismatchError(
            f"Pairs file {p} holds {x.shape[1]}-d -> {y.shape[1]}-d pairs; {source_dim}-d -> {target_dim}-d "
            "are needed.", "give pairs embedded by the old model (source) and the new model (target).")
    ids = table.column("id").to_pylist() if "id" in table.column_names else None
    return Pairs(x, y, ids, None, "parquet")


def pairs_by_id(source_sample: Batch, target) -> Pairs:
    """Rows of a source sample whose id the target store also holds, aligned (possibly none)."""
    found = target.get(list(source_sample.ids))
    row_of = {x: i for i, x in enumerate(source_sample.ids)}
    rows = [row_of[x] for x in found.ids]
    pays = [source_sample.payloads[r] for r in rows] if source_sample.payloads is not None else None
    y = np.asarray(found.vectors, np.float32).reshape(len(rows), target.dim)
    return Pairs(source_sample.vectors[rows], y, list(found.ids), pays, "target-store")


def shared_id_pairs(source, target, source_sample: Batch, limit: int, seed: int = 1) -> Pairs:
    """Up to `limit` pairs by id: the source sample looked up in the target, then a target sample in the source.

    Looking both ways finds pairs when only a small part of either store is shared.
    """
    pairs = pairs_by_id(source_sample, target)
    if len(pairs) < limit:
        seen = set(pairs.ids)
        wanted = [x for x in target.sample(limit, seed=seed).ids if x not in seen]
        back = pairs_by_id(source.get(wanted), target) if wanted else None
        if back is not None and len(back):
            pays = None
            if pairs.payloads is not None or back.payloads is not None:
                pays = (pairs.payloads or [None] * len(pairs)) + (back.payloads or [None] * len(back))
            pairs = Pairs(np.concatenate([pairs.x, back.x]), np.concatenate([pairs.y, back.y]),
                          pairs.ids + back.ids, pays, pairs.origin)
    return pairs.head(limit)
