"""The encoder base class: batching, output checks and the progress bar shared by every backend.

A backend implements `_encode_batch(list[str]) -> array (n, d)`; `encode` adds the prefix, cuts the texts in
batches of `batch_size`, checks each answer (one finite row per text, one dimension throughout, the expected
dimension when the caller knows it) and fills one float32 array. Memory: the output plus one batch.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from v2v_migrate.errors import EncoderError

DEFAULT_BATCH = 64


class Encoder:
    """Base: batching, validation and progress; a backend implements `_encode_batch(texts) -> array`."""

    def __init__(self, name: str, prefix: str = "", batch_size: int = DEFAULT_BATCH):
        self.name, self.prefix, self.batch_size = name, prefix or "", max(1, int(batch_size))
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.encode(["dimension probe"])
        return int(self._dim)

    def encode(self, texts, progress: bool = False, expected_dim: int | None = None) -> np.ndarray:
        """float32 (len(texts), dim): texts embedded in batches of batch_size (prefix added)."""
        texts = [self.prefix + str(t) for t in texts]
        out = None
        bar = _bar(len(texts), self.name) if progress and len(texts) > self.batch_size else None
        try:
            for s in range(0, len(texts), self.batch_size):
                chunk = texts[s:s + self.batch_size]
                y = self._check(self._encode_batch(chunk), len(chunk), expected_dim)
                if out is None:
                    out = np.empty((len(texts), y.shape[1]), dtype=np.float32)
                out[s:s + len(chunk)] = y
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return out if out is not None else np.zeros((0, self._dim or 0), dtype=np.float32)

    def rate(self, texts, warmup: int = 4) -> float:
        """Texts per second on this machine (after a small warm-up batch: model loading is not counted)."""
        self.encode(texts[:warmup])
        t0 = time.perf_counter()
        self.encode(texts)
        return len(texts) / max(time.perf_counter() - t0, 1e-9)

    def _check(self, y, n: int, expected_dim: int | None) -> np.ndarray:
        try:
            y = np.asarray(y, dtype=np.float32)
        except (TypeError, ValueError):
            raise EncoderError(f"encoder {self.name} returned something that is not a float array.",
                               "return one list of floats per text.") from None
        if y.ndim != 2 or len(y) != n:
            raise EncoderError(f"encoder {self.name} returned shape {y.shape} for {n} texts.",
                               "return one vector per text, as an array of shape (n, d).")
        if self._dim is not None and y.shape[1] != self._dim:
            raise EncoderError(f"encoder {self.name} returned {y.shape[1]}-d vectors after {self._dim}-d ones.",
                               "serve one model with one output dimension.")
        if expected_dim is not None and y.shape[1] != expected_dim:
            raise EncoderError(f"encoder {self.name} returns {y.shape[1]}-d vectors; the new model's vectors "
                               f"here are {expected_dim}-d.", "pass the encoder of the new model (same dimension).")
        if not np.isfinite(y).all():
            raise EncoderError(f"encoder {self.name} returned NaN or infinite values.",
                               "check the model (or the endpoint) on these texts.")
        self._dim = int(y.shape[1])
        return y

    def _encode_batch(self, texts: list[str]):  # pragma: no cover - each backend overrides
        raise NotImplementedError

    def close(self) -> None:
        pass


def _bar(total: int, name: str):
    from tqdm import tqdm

    # stderr only, and only for a person watching (a tty): logs and --json stay clean.
    return tqdm(total=total, desc=f"encoding ({name})", unit="text", file=sys.stderr,
                disable=not sys.stderr.isatty(), leave=False)
