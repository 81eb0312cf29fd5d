"""What an apply migrates: every row, or a subset (a filter in the engine's own syntax, named partitions, an
id list), and every vector, or all but the ones dropped with --drop-vector.

The selection is part of a migration's identity: the checkpoint records it (`record()`), and a resumed run
with another selection is refused, since its cursor means nothing for another subset.

- `--filter EXPR`: Milvus boolean expressions (`tenant == "a" and year >= 2024`) and Qdrant JSON filters
  (`{"must": [{"key": "tenant", "match": {"value": "a"}}]}`), applied by the engine (connector option
  `filter=`).
- `--partition NAME` (repeatable): Milvus partitions (connector option `partitions=`).
- `--ids FILE`: one id per line (read as the source's id type), for every engine; rows are fetched by id
  in chunks, and ids the source does not hold are counted, not invented. The checkpoint keeps the
  position in the file and the file's hash.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from connectors.base import EXTRA_VECTORS, Batch
from v2v_migrate.errors import UsageError

FILTER_SCHEMES = ("milvus", "qdrant", "qdrant-edge")
PARTITION_SCHEMES = ("milvus",)
ID_CHUNK = 4096


@dataclass
class Selection:
    filter: str | None = None
    partitions: tuple = ()
    ids_file: str | None = None
    drop_vectors: tuple = ()
    ids_sha256: str | None = field(default=None, init=False)

    def __post_init__(self):
        self.filter = self.filter.strip() if isinstance(self.filter, str) and self.filter.strip() else None
        self.partitions = tuple(sorted(set(self.partitions or ())))
        self.drop_vectors = tuple(sorted(set(self.drop_vectors or ())))
        if self.ids_file:
            path = Path(self.ids_file).expanduser().resolve()
            if not path.is_file():
                raise UsageError(f"--ids file {path} does not exist.", "pass a text file with one id per line.")
            self.ids_file = str(path)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self.ids_sha256 = digest.hexdigest()

    @property
    def subset(self) -> bool:
        return bool(self.filter or self.partitions or self.ids_file)

    def record(self) -> dict | None:
        """What the checkpoint keeps (None for a plain full migration, as checkpoints before it had)."""
        if not self.subset and not self.drop_vectors:
            return None
        out: dict[str, Any] = {}
        if self.filter:
            out["filter"] = self.filter
        if self.partitions:
            out["partitions"] = list(self.partitions)
        if self.ids_file:  # the content names the subset; the folder it sits in does not matter
            out["ids_file"], out["ids_sha256"] = os.path.basename(self.ids_file), self.ids_sha256
        if self.drop_vectors:
            out["drop_vectors"] = list(self.drop_vectors)
        return out

    def source_options(self, scheme: str, options: dict | None) -> dict:
        """The source's connector options with the filter and partitions added (refused where unsupported)."""
        out = dict(options or {})
        if self.filter:
            if scheme not in FILTER_SCHEMES:
                raise UsageError(f"--filter works on Milvus and Qdrant sources, not {scheme}.",
                                 "select rows of this source with --ids FILE (one id per line).")
            out["filter"] = self.filter
        if self.partitions:
            if scheme not in PARTITION_SCHEMES:
                raise UsageError(f"--partition works on Milvus sources, not {scheme}.",
                                 "select rows with --filter or --ids FILE instead.")
            out["partitions"] = list(self.partitions)
        return out

    def wrap(self, store):
        return IdListSource(store, self.ids_file) if self.ids_file else store


def strip_vectors(batch: Batch, drop: tuple) -> Batch:
    """The batch without the other vectors named in `drop`."""
    extras = batch.extra.get(EXTRA_VECTORS)
    if not drop or not extras or not set(drop) & set(extras):
        return batch
    extra = dict(batch.extra)
    extra[EXTRA_VECTORS] = {n: v for n, v in extras.items() if n not in drop}
    return Batch(batch.ids, batch.vectors, batch.payloads, batch.cursor, extra)


class IdListSource:
    """A store seen through an id list: streams the listed rows that exist, in file order, by `get`.

    Everything else (dim, metric, sample, describe_schema, ...) is the store's own. The cursor is the
    number of lines consumed; `missing` counts listed ids the store does not hold (so far)."""

    def __init__(self, store, ids_file: str):
        self._store, self.ids_file = store, ids_file
        self.missing = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _ids(self, skip: int) -> Iterator[tuple[int, Any]]:
        as_int = self._store.id_type == "int"
        with open(self.ids_file, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                text = line.rstrip("\r\n")
                if line_no <= skip or not text.strip():
                    continue
                try:
                    yield line_no, int(text) if as_int else text
                except ValueError:
                    raise UsageError(f"--ids line {line_no}: {text[:40]!r} is not an int id (the source's ids "
                                     "are ints).", "list one integer id per line.") from None

    def count(self) -> int:
        with open(self.ids_file, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())

    def shards(self, n: int) -> list:
        return [None]

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        skip = int(cursor["ids_line"]) if isinstance(cursor, dict) and "ids_line" in cursor else 0
        chunk: list = []
        for line_no, x in self._ids(skip):
            chunk.append(x)
            if len(chunk) >= min(int(batch_size), ID_CHUNK):
                yield self._fetch(chunk, line_no)
                chunk = []
        if chunk:
            yield self._fetch(chunk, line_no)

    def _fetch(self, ids: list, line_no: int) -> Batch:
        got = self._store.get(ids)
        self.missing += len(set(ids)) - len(set(got.ids))
        order = {x: i for i, x in enumerate(got.ids)}
        keep = [order[x] for x in dict.fromkeys(ids) if x in order]  # file order, each id once
        out = got.take(keep)
        out.cursor = {"ids_line": line_no}
        return out

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        return f"IdListSource({self._store!r}, {os.path.basename(self.ids_file)!r})"
