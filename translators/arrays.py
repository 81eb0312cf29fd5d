"""Array helpers every translator shares: checked float32 matrices and unit rows (numpy and torch)."""
from __future__ import annotations

import numpy as np

from translators.errors import DimensionMismatchError, InvalidVectorsError


def as_matrix(x, dim: int | None = None, where: str = "vectors") -> np.ndarray:
    """`x` as a C-contiguous float32 (n, d) array; refuses other ranks, non-floats, NaN/inf, a wrong d."""
    arr = np.asarray(x)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InvalidVectorsError(f"{where}: expected a 2-D float array (n, dim), got {arr.dtype} {arr.shape}.",
                                  "pass one float vector per row.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(f"{where}: vectors have dimension {arr.shape[1]}, {dim} expected.",
                                     "pass vectors of the model this translator was trained for.")
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise InvalidVectorsError(f"{where}: {len(bad)} row(s) hold NaN or inf (first: {bad[:5].tolist()}).",
                                  "repair or drop those rows first.")
    return arr


def unit(a) -> np.ndarray:
    """Rows scaled to length 1 (float32; zero rows stay zero)."""
    a = np.asarray(a, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def unit_t(t):
    """`unit` for torch tensors (last dimension)."""
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
