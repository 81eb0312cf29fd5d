"""Which part file of a Parquet dataset of ours holds an id, without holding every id in memory.

The writer must find the older row of an id it writes again (a replayed batch after a crash, an
incremental run, a source with repeated ids), and a dict of every id cost ~100 bytes of heap per row:
1 GB at 10M rows. Instead each part file gets a sorted int64 key array on disk,
`.v2v-ids/<part name>.npy` inside the dataset folder, memory-mapped when looked up: its pages are
file-backed (the kernel drops them at will), so the index costs no heap whatever the dataset size. In
memory stay only each part's smallest and largest key (16 bytes per part file), which rule out the parts
whose range cannot hold any key of the batch: ids written in increasing order leave one or two candidates.

The key files are a cache: dot-named, so plain Parquet readers skip them; one that is missing, unreadable
or of the wrong length is rebuilt from the part's `id` column (one part at a time); those of unlisted parts
are swept with the parts. String ids are keyed by their 63-bit hash (connectors.ids.to_int64): a collision
only makes a part a candidate, and the writer then filters that part by the real ids.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from connectors.ids import to_int64

KEYS_DIR = ".v2v-ids"


class PartKeys:
    def __init__(self, root: Path, id_type: str):
        self.dir = Path(root) / KEYS_DIR
        self.id_type = id_type
        self._names: list[str] = []
        self._lo = np.zeros(0, np.int64)
        self._hi = np.zeros(0, np.int64)

    def keys_of(self, ids: Iterable) -> np.ndarray:
        if self.id_type == "int":
            return np.fromiter(ids, dtype=np.int64)
        return np.fromiter((to_int64(x) for x in ids), dtype=np.int64)

    def _file(self, name: str) -> Path:
        return self.dir / (name + ".npy")

    def _track(self, name: str, keys: np.ndarray) -> None:
        if not len(keys):
            return  # an empty part holds no id: never a candidate
        self._names.append(name)
        self._lo = np.append(self._lo, keys[0])
        self._hi = np.append(self._hi, keys[-1])

    def add(self, name: str, ids: Iterable) -> None:
        """Record the ids of a part just written (before the commit that lists it)."""
        keys = np.sort(self.keys_of(ids))
        self.dir.mkdir(exist_ok=True)
        tmp = self.dir / (name + ".npy.tmp")
        with open(tmp, "wb") as f:
            np.save(f, keys)
        os.replace(tmp, self._file(name))  # no fsync: a torn file is detected by load() and rebuilt
        self._track(name, keys)

    def load(self, name: str, rows: int, read_ids: Callable[[], list]) -> None:
        """Track a listed part: its key file when that is whole, else rebuilt from `read_ids()`."""
        try:
            keys = np.load(self._file(name), mmap_mode="r")
            if keys.dtype != np.int64 or keys.shape != (rows,):
                raise ValueError("stale")
        except (OSError, ValueError):
            self.add(name, read_ids())
            return
        self._track(name, keys)

    def forget(self, name: str) -> None:
        """The part left the working file list (rewritten or emptied); its key file goes with the part."""
        if name in self._names:
            i = self._names.index(name)
            del self._names[i]
            self._lo, self._hi = np.delete(self._lo, i), np.delete(self._hi, i)

    def unlink(self, name: str) -> None:
        self._file(name).unlink(missing_ok=True)

    def holders(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """{part name: positions in `keys` of the keys that part holds} (hash collisions included)."""
        out: dict[str, np.ndarray] = {}
        if not len(keys) or not self._names:
            return out
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        near = np.flatnonzero((self._lo <= sorted_keys[-1]) & (self._hi >= sorted_keys[0]))
        for i in near.tolist():
            part = np.load(self._file(self._names[i]), mmap_mode="r")
            at = np.minimum(np.searchsorted(part, sorted_keys), len(part) - 1)
            hit = np.asarray(part[at]) == sorted_keys
            if hit.any():
                out[self._names[i]] = order[hit]
            del part  # unmapped now: a dataset of thousands of parts never holds thousands of maps
        return out

    def sweep(self, listed: set[str]) -> None:
        """Remove key files of parts that are not listed (a flush that crashed before its commit)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            if p.name.endswith(".tmp") or p.name.removesuffix(".npy") not in listed:
                p.unlink()
