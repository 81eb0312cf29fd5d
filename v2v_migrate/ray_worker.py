"""The Ray side of `apply --engine ray`: one actor per worker that reads source shards and translates them.

Kept apart from `ray_apply.py` (the driver) so the actor code stays small and so that nothing here imports
ray: the driver wraps `ShardWorker` with `ray.remote(...)` itself. Everything an actor needs travels with
it — the translator directory as bytes (so a cluster needs no shared storage for it) and the source URI —
and it never writes to the destination: embedded destinations take writes from one process only, so the
driver does every write and checkpoints after each durable flush.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from translators.errors import TranslatorFileError

# A translator directory is a few small files (config, weights, metrics); refuse to ship anything odd.
_MAX_TRANSLATOR_BYTES = 2 << 30


def pack_translator_dir(path: str | os.PathLike) -> dict[str, bytes]:
    """The translator directory's files as {name: bytes}, to ship to actors as one Ray object."""
    path = Path(path)
    files = {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}
    if sum(len(b) for b in files.values()) > _MAX_TRANSLATOR_BYTES:
        raise TranslatorFileError(f"translator directory {str(path)!r} holds more than 2 GiB.",
                              "pass the folder written by `v2v-migrate train --out`, nothing else.")
    return files


def unpack_translator_dir(files: dict[str, bytes]) -> str:
    """Write shipped translator files into a fresh private temp dir and return its path."""
    tmp = tempfile.mkdtemp(prefix="v2v-translator-")
    for name, data in files.items():
        (Path(tmp) / Path(name).name).write_bytes(data)  # .name: never write outside tmp
    return tmp


def translate_batch(translator, vectors: np.ndarray) -> np.ndarray:
    """Translate one batch; on CUDA, through pinned host memory so the copy to the GPU is asynchronous.

    On CPU this is exactly `translator(vectors)`, so the CPU fallback gives the single-process results.
    """
    if getattr(translator, "device", "cpu") == "cpu":
        return translator(vectors)
    import torch

    from connectors.base import validate_vectors

    x = validate_vectors(vectors, dim=translator.source_dim, where="translator input")
    with torch.inference_mode():
        pinned = torch.from_numpy(x).pin_memory()
        y = translator.module(pinned.to(translator.device, non_blocking=True))
        return y.float().cpu().numpy()


class ShardWorker:
    """Reads shards of the source (when `read_source`) and translates vectors; state is one open iterator.

    The driver gives a shard to one actor at a time and calls `read_chunk` repeatedly: the actor keeps the
    shard's iterator open between calls, so a call costs no seek, and re-opens it at the given cursor when
    asked for another position (a resumed shard, or a shard moved from another actor).
    """

    def __init__(self, translator_files: dict[str, bytes], fingerprint: str, source_uri: str | None,
                 source_options: dict | None, device: str, torch_threads: int | None = None):
        # Nothing that can fail here: an error raised in an actor's constructor reaches the driver as a bare
        # ActorDiedError, while one raised in `setup` keeps its type (and its fix) through Ray.
        self._args = (translator_files, fingerprint, source_uri, source_options, device, torch_threads)
        self.translator = self.source = None
        self._iter = None
        self._iter_key: Any = None  # (shard index, cursor the iterator stands at)

    def setup(self) -> str:
        """Load the translator (on `device`) and open the source; returns the device in use."""
        from translators import load_translator

        translator_files, fingerprint, source_uri, source_options, device, torch_threads = self._args
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        tmp = unpack_translator_dir(translator_files)
        try:
            self.translator = load_translator(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if self.translator.fingerprint != fingerprint:
            # Another torch/numpy build on a cluster node can change what the bytes mean: refuse early.
            raise TranslatorFileError("a Ray worker rebuilt the translator with another fingerprint.",
                                  "install the same v2v-migrate, torch and numpy versions on every Ray node.")
        self.translator.to(device)
        if source_uri is not None:
            from connectors import open_store

            self.source = open_store(source_uri, **(source_options or {}))
            if not self.source.exists():
                from connectors.errors import StoreNotFoundError

                raise StoreNotFoundError(f"a Ray worker cannot see the source {source_uri}.",
                                         "put the source on storage every Ray node mounts at the same path.")
        return self.translator.device

    def translate(self, vectors: np.ndarray) -> np.ndarray:
        return translate_batch(self.translator, vectors)

    def read_chunk(self, index: int, shard: Any, cursor: Any, batch_size: int, max_rows: int) -> dict:
        """Up to `max_rows` translated rows of shard `index` starting after `cursor`, as whole batches.

        Returns {'batches': [(ids, vectors, payloads, cursor, extra), ...], 'done': bool}; each cursor is the
        source's own position after that batch, which the driver records once the batch is durable; extra is
        the batch's other vectors and partition (Batch.extra), written unchanged.
        """
        key = (index, _freeze(cursor))
        if self._iter is None or self._iter_key != key:
            self._iter = iter(self.source.iter_batches(batch_size, cursor=cursor, shard=shard))
        out, rows, done = [], 0, False
        while rows < max_rows:
            batch = next(self._iter, None)
            if batch is None:
                done = True
                break
            vectors = translate_batch(self.translator, batch.vectors)
            out.append((list(batch.ids), vectors, batch.payloads, batch.cursor, batch.extra))
            rows += len(batch)
            cursor = batch.cursor
        self._iter_key = (index, _freeze(cursor))
        if done:
            self._iter, self._iter_key = None, None
        return {"batches": out, "done": done}

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None


def _freeze(value: Any) -> Any:
    """A hashable, comparable form of a JSON-like cursor (lists and dicts become tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
