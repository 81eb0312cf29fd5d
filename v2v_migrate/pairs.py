"""Known pairs: vectors of the same texts under the old and the new model.

One reader for `--pairs FILE` (Parquet: list<float> columns `source` and `target`, optional `id` of the
source row), one way to find pairs by id in two stores (ids present in both are the same texts), and one way
to make pairs with the new model's encoder (source rows' texts embedded). train and report both use these.

Held-out rule: a row belongs to the evaluation half when a seeded hash of its id (of its row number in a
pairs file without ids) falls in the first HOLDOUT_FRACTION of the hash range. train fits only on the
other rows and records the rule in the translator's config; report measures only on held-out rows, so the
figures never come from pairs the translator was fitted on, whatever store or file they come from.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectors import Batch
from connectors.base import id_hash_key
from connectors.errors import DimensionMismatchError, StoreNotFoundError, UnreadableStoreError

HOLDOUT_FRACTION = 0.2
HOLDOUT_SALT = 0x5EED_0DD5  # fixed: the split of a store never depends on train's --seed


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
        return self.take(np.arange(min(n, len(self))))

    def take(self, rows) -> "Pairs":
        rows = np.asarray(rows, dtype=np.int64)
        pick = (lambda v: None if v is None else [v[i] for i in rows])
        return Pairs(self.x[rows], self.y[rows], pick(self.ids), pick(self.payloads), self.origin)

    def concat(self, other: "Pairs | None") -> "Pairs":
        if other is None or not len(other):
            return self
        if not len(self):
            return other
        ids = None if self.ids is None or other.ids is None else list(self.ids) + list(other.ids)
        pays = None
        if self.payloads is not None or other.payloads is not None:
            pays = list(self.payloads or [None] * len(self)) + list(other.payloads or [None] * len(other))
        return Pairs(np.concatenate([self.x, other.x]), np.concatenate([self.y, other.y]), ids, pays,
                     f"{self.origin}+{other.origin}")


def holdout_rule() -> dict:
    """What train records in the translator config (report reads it back with `held_out`)."""
    return {"rule": "id-hash", "salt": HOLDOUT_SALT, "fraction": HOLDOUT_FRACTION}


def held_out(ids, rule: dict | None = None) -> np.ndarray:
    """Boolean mask: which ids belong to the evaluation part (never trained on)."""
    rule = rule or holdout_rule()
    keys = id_hash_key(list(ids), int(rule["salt"]))
    return keys < np.uint64(int(float(rule["fraction"]) * 2.0**64))


def split_pairs(pairs: Pairs, want_held_out: bool, rule: dict | None = None) -> Pairs:
    """The training part (want_held_out False) or the evaluation part of a set of pairs."""
    ids = pairs.ids if pairs.ids is not None else list(range(len(pairs)))
    mask = held_out(ids, rule) if len(pairs) else np.zeros(0, bool)
    return pairs.take(np.flatnonzero(mask == want_held_out))


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            pairs = pairs.concat(back)
            pairs.origin = back.origin
    return pairs.head(limit)


def encode_pairs(source, encoder, n: int, *, want_held_out: bool, seed: int = 0, text_field: str | None = None,
                 rule: dict | None = None, progress: bool = False,
                 expected_dim: int | None = None) -> tuple[Pairs, str]:
    """(pairs, text field): up to n source rows of one part (training or held-out) that have text, drawn
    uniformly (seeded id hash), with their texts embedded by the new model's encoder.

    The sample grows until it holds n usable rows or covers the store, so memory stays O(n) rows.
    """
    from v2v_migrate.encoders import detect_text_field, texts_of

    part = HOLDOUT_FRACTION if want_held_out else 1.0 - HOLDOUT_FRACTION
    total = source.count()
    take = min(total, int(n / part * 1.1) + 64)
    while True:
        sample = source.sample(take, seed=seed)
        field = detect_text_field(sample.payloads, text_field)
        texts = texts_of(sample.payloads, field)
        mask = held_out(sample.ids, rule) == want_held_out
        rows = [i for i in np.flatnonzero(mask) if texts[i] is not None][:n]
        if len(rows) >= n or take >= total:
            break
        take = min(total, take * 2)
    y = encoder.encode([texts[i] for i in rows], progress=progress, expected_dim=expected_dim)
    pays = [sample.payloads[i] for i in rows]
    pairs = Pairs(sample.vectors[rows], y, [sample.ids[i] for i in rows], pays, "encoder")
    return pairs, field
