"""Linear building blocks: the shared pre/post-processing, Procrustes, ridge, and the baselines.

Every linear method fits in the same "fit space": each vector L2-normalised, its side's mean subtracted,
normalised again (centring removes the cone every sentence encoder puts its vectors in; the second
normalisation keeps one point one vote). LinearMap undoes this at inference: outputs get the centred target
scale, the target mean and the target's typical norm back, so they live in the RAW target space.
"""
from __future__ import annotations

import numpy as np

from translators.arrays import as_matrix, unit
from translators.errors import DimensionMismatchError, TrainingError
from translators.model import Translator, linear_translator



def side_stats(vectors: np.ndarray) -> dict:
    """Mean of the unit vectors, mean norm after centring, typical raw norm (None-free floats)."""
    raw_norms = np.linalg.norm(vectors, axis=1)
    u = unit(vectors)
    mean = u.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred_scale = float(np.mean(np.linalg.norm(u - mean, axis=1)))
    return {"mean": mean, "centred_scale": centred_scale, "raw_norm": float(np.median(raw_norms)),
            "unit_length": bool(np.all(np.abs(raw_norms - 1.0) < 1e-2))}


def to_fit_space(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return unit(unit(vectors) - mean)


def output_config(target_stats: dict) -> dict:
    """LinearMap post-processing flags that put outputs in the raw target space."""
    return {"normalize_input": True, "normalize_centered": True,
            "target_scale": target_stats["centred_scale"],
            "output_norm": 1.0 if target_stats["unit_length"] else target_stats["raw_norm"]}


def procrustes(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Semi-orthogonal W (d_s, d_t) maximising sum_i w_i <x_i W, y_i>; handles d_s != d_t both ways."""
    xw = x if weights is None else x * weights[:, None].astype(np.float32)
    return polar(xw.T.astype(np.float64) @ y.astype(np.float64))


def polar(m: np.ndarray) -> np.ndarray:
    """The nearest semi-orthogonal matrix to m (its polar factor U V^T), float32."""
    u, _, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """W = argmin ||xW - y||^2 + lam ||W||^2 (float64 solve)."""
    x64 = x.astype(np.float64)
    gram = x64.T @ x64
    gram[np.diag_indices_from(gram)] += lam
    return np.linalg.solve(gram, x64.T @ y.astype(np.float64)).astype(np.float32)


def choose_ridge_lambda(x: np.ndarray, y: np.ndarray, seed: int = 0,
                        grid=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)) -> float:
    """Pick lambda (relative to mean Gram diagonal x n) by held-out mean cosine on a 20% split of the pairs."""
    n = len(x)
    if n < 10:
        return float(grid[-1]) * max(1, n) / x.shape[1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    cut = max(1, n // 5)
    va, tr = order[:cut], order[cut:]
    scale = len(tr) / x.shape[1]  # mean Gram diagonal of unit rows is n/d
    best, best_cos = grid[0], -np.inf
    for rel in grid:
        w = ridge(x[tr], y[tr], rel * scale)
        cos = float(np.mean(np.sum(unit(x[va] @ w) * y[va], axis=1)))
        if cos > best_cos:
            best, best_cos = rel, cos
    return float(best) * n / x.shape[1]


def check_pairs(pairs, source_dim: int, target_dim: int, minimum: int = 1):
    """Validate (X_pairs, Y_pairs): dims match the two sides, same length, at least `minimum` rows."""
    if pairs is None:
        if minimum:
            raise TrainingError("this method needs known pairs, none were given.",
                                f"pass pairs=(X, Y) with at least {minimum} rows (--pairs FILE), or use method 'auto'.")
        return None
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 2:
        raise TrainingError("pairs must be a tuple (X_pairs, Y_pairs).",
                            "pass the source and target vectors of the same texts as two arrays.")
    xp = as_matrix(pairs[0], where="pairs (source side)")
    yp = as_matrix(pairs[1], where="pairs (target side)")
    if xp.shape[1] != source_dim:
        raise DimensionMismatchError(f"source side of the pairs has dimension {xp.shape[1]}, the source has {source_dim}.",
                                     "take the pairs' source vectors from the source model.")
    if yp.shape[1] != target_dim:
        raise DimensionMismatchError(f"target side of the pairs has dimension {yp.shape[1]}, the target has {target_dim}.",
                                     "take the pairs' target vectors from the target model.")
    if len(xp) != len(yp):
        raise TrainingError(f"pairs have {len(xp)} source rows but {len(yp)} target rows.",
                            "give one target vector per source vector, same order.")
    if len(xp) < minimum:
        raise TrainingError(f"{len(xp)} pair(s) given, this method needs at least {minimum}.",
                            f"provide at least {minimum} known pairs, or use method 'auto' (no pairs needed).")
    return xp, yp


def _base_config(method: str, source, target, seed: int) -> tuple[dict, dict, dict]:
    s_stats, t_stats = side_stats(source), side_stats(target)
    cfg = {"method": method, "seed": int(seed), **output_config(t_stats),
           "training_data": {"source_rows": int(len(source)), "target_rows": int(len(target))}}
    return cfg, s_stats, t_stats


def fit_supervised(method: str, source, target, pairs, seed: int = 0, ridge_lambda: float | None = None) -> Translator:
    """'procrustes' or 'ridge' on known pairs; the unpaired samples (plus pairs) give the side means."""
    xp, yp = pairs
    src_all = np.concatenate([source, xp]) if len(source) else xp
    tgt_all = np.concatenate([target, yp]) if len(target) else yp
    cfg, s_stats, t_stats = _base_config(method, src_all, tgt_all, seed)
    xf, yf = to_fit_space(xp, s_stats["mean"]), to_fit_space(yp, t_stats["mean"])
    cfg["training_data"]["pairs"] = int(len(xp))
    if method == "procrustes":
        w = procrustes(xf, yf)
    else:
        lam = choose_ridge_lambda(xf, yf, seed) if ridge_lambda is None else float(ridge_lambda)
        cfg["ridge_lambda"] = lam
        w = ridge(xf, yf, lam)
    return linear_translator(w, s_stats["mean"], t_stats["mean"], cfg)


def fit_identity(source, target, seed: int = 0) -> Translator:
    """Baseline: vectors copied unchanged (only meaningful to show what no translation gives)."""
    if source.shape[1] != target.shape[1]:
        raise DimensionMismatchError(f"identity needs equal dimensions, got {source.shape[1]} -> {target.shape[1]}.",
                                     "use method 'auto' for models of different dimensions.")
    d = source.shape[1]
    cfg = {"method": "identity", "seed": int(seed), "normalize_input": False, "normalize_centered": False,
           "target_scale": None, "output_norm": None,
           "training_data": {"source_rows": int(len(source)), "target_rows": int(len(target))}}
    zeros = np.zeros(d, np.float32)
    return linear_translator(np.eye(d, dtype=np.float32), zeros, zeros, cfg)


def random_semi_orthogonal(ds: int, dt: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((max(ds, dt), min(ds, dt))))
    q = q * np.sign(np.diag(r))  # Haar-distributed
    return (q if ds >= dt else q.T).astype(np.float32)


def fit_random(source, target, seed: int = 0) -> Translator:
    """Baseline: a random (semi-)orthogonal map with the same pre/post-processing as the real methods."""
    cfg, s_stats, t_stats = _base_config("random", source, target, seed)
    w = random_semi_orthogonal(source.shape[1], target.shape[1], seed)
    return linear_translator(w, s_stats["mean"], t_stats["mean"], cfg)
