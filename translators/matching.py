"""Matching primitives for the unsupervised method: spherical k-means, entropic Gromov-Wasserstein between
the two sides' cluster geometries, and CSLS mutual nearest neighbours. Pure numpy, bounded memory."""
from __future__ import annotations

import numpy as np

from translators.arrays import unit

_BLOCK = 2048  # rows of a similarity matrix held at once (2048 x 16k float32 = 128 MB at most)


def spherical_kmeans(z: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 20):
    """Unit centroids (k, d) and cluster sizes (k,) of unit rows z; k-means++-free (seeded sample) init."""
    k = int(min(k, len(z)))
    centroids = z[rng.choice(len(z), k, replace=False)].copy()
    for _ in range(iterations):
        labels = np.argmax(z @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, z)
        empty = ~np.any(sums, axis=1)
        sums[empty] = z[rng.integers(len(z), size=int(empty.sum()))]  # re-seed empty clusters
        centroids = unit(sums)
    labels = np.argmax(z @ centroids.T, axis=1)
    return centroids, np.bincount(labels, minlength=k).astype(np.float64)


def _sinkhorn(p, q, cost, eps, iterations=100):
    kernel = np.exp(-(cost - cost.min()) / eps)
    u, v = np.ones_like(p), np.ones_like(q)
    for _ in range(iterations):
        u = p / np.maximum(kernel @ v, 1e-300)
        v = q / np.maximum(kernel.T @ u, 1e-300)
    return u[:, None] * kernel * v[None, :]


def gromov_wasserstein(c1, c2, p, q, rng: np.random.Generator, eps: float = 2e-3, steps: int = 30):
    """Entropic GW coupling (square loss) between two weighted similarity matrices, eps annealed down.

    Starts from a random coupling so that restarts explore different local optima; returns (T, loss).
    """
    c1, c2 = c1.astype(np.float64), c2.astype(np.float64)
    coupling = _sinkhorn(p, q, rng.random((len(p), len(q))), 1.0)
    const = ((c1 ** 2) @ p)[:, None] + ((c2 ** 2) @ q)[None, :]
    for e in np.geomspace(eps * 20, eps, steps):
        coupling = _sinkhorn(p, q, const - 2 * c1 @ coupling @ c2.T, e)
    grad = const - 2 * c1 @ coupling @ c2.T
    return coupling, float(np.sum(grad * coupling))


def csls_mutual_nn(z: np.ndarray, y: np.ndarray, k: int = 10):
    """Mutual nearest neighbours of unit rows z and y under CSLS (hubness-corrected cosine).

    Returns (i, j, cosine, csls, nn_cosine): the mutual pairs, their raw cosines and CSLS scores, and each
    z row's best raw cosine to y (for health figures).
    """
    n, m = len(z), len(y)
    k = int(max(1, min(k, n - 1, m - 1)))
    r_z = np.empty(n, np.float32)
    nn_cos = np.empty(n, np.float32)
    top_y = None
    for s in range(0, n, _BLOCK):
        sims = z[s:s + _BLOCK] @ y.T
        nn_cos[s:s + _BLOCK] = sims.max(axis=1)
        r_z[s:s + _BLOCK] = -np.mean(np.partition(-sims, k - 1, axis=1)[:, :k], axis=1)
        part = -np.partition(-sims, k - 1, axis=0)[:k] if len(sims) > k else sims
        merged = part if top_y is None else np.concatenate([top_y, part])
        top_y = -np.partition(-merged, k - 1, axis=0)[:k] if len(merged) > k else merged
    r_y = top_y.mean(axis=0)
    best_j = np.empty(n, np.int64)
    best_i, best_i_score = np.full(m, -1), np.full(m, -np.inf, np.float32)
    for s in range(0, n, _BLOCK):
        score = 2 * (z[s:s + _BLOCK] @ y.T) - r_z[s:s + _BLOCK, None] - r_y[None, :]
        best_j[s:s + _BLOCK] = np.argmax(score, axis=1)
        col_best = score.max(axis=0)
        better = col_best > best_i_score
        best_i_score[better] = col_best[better]
        best_i[better] = np.argmax(score, axis=0)[better] + s
    i = np.flatnonzero(best_i[best_j] == np.arange(n))
    j = best_j[i]
    cos = np.sum(z[i] * y[j], axis=1)
    csls = 2 * cos - r_z[i] - r_y[j]
    return i, j, cos, csls, nn_cos


def similarity_profiles(z: np.ndarray, quantiles: int = 64) -> np.ndarray:
    """Rotation-invariant descriptor of each unit row: quantiles of its sorted similarities to the others.

    An isometry between two samples of one distribution leaves these profiles (nearly) unchanged, so rows
    can be matched across spaces before any map is known (the idea of VecMap's unsupervised start).
    Positions are spaced geometrically so the nearest neighbours, which carry most information, get most.
    """
    n = len(z)
    positions = np.unique(np.clip(np.round(np.geomspace(1, n - 1, quantiles)).astype(int), 1, n - 1))
    out = np.empty((n, len(positions)), np.float32)
    for s in range(0, n, _BLOCK):
        sims = np.sort(z[s:s + _BLOCK] @ z.T, axis=1)[:, ::-1]  # column 0 is the row itself
        out[s:s + _BLOCK] = sims[:, positions]
    out -= out.mean(axis=0)
    out /= np.maximum(out.std(axis=0), 1e-6)
    return unit(out)


def ot_barycentres(z: np.ndarray, y: np.ndarray, eps: float, iterations: int = 100, device: str = "cpu",
                   tol: float | None = None, warm: dict | None = None) -> np.ndarray:
    """Each z row's barycentre of y under the entropic optimal-transport plan (uniform marginals, cost 1 - cos).

    Unlike nearest neighbours, a balanced transport plan must use every target row once in total, so a map
    cannot score well by sending many sources onto one dense target region: the global constraint that lets
    Wasserstein-Procrustes (Grave et al. 2019; Alvarez-Melis & Jaakkola 2018) leave a weak start's basin.
    Returns n * (P @ y): row i is sum_j P_ij y_j / sum_j P_ij. Torch (all cores, or `device`) for the n x m
    kernel.
    tol: stop Sinkhorn once every row's mass is within this relative error of 1/n (the columns are exact after
    each step); None runs all `iterations`. warm: a dict carried between calls on the same y and eps: the
    column scaling of the last plan starts the next one (consecutive refinement rounds move the map little).
    """
    import torch

    zt = torch.from_numpy(np.ascontiguousarray(z, np.float32)).to(device)
    yt = torch.from_numpy(np.ascontiguousarray(y, np.float32)).to(device)
    n, m = len(zt), len(yt)
    # exp((cos - 1) / eps) stays in float32 range for eps >= 0.01 (no log domain needed)
    kernel = torch.exp((zt @ yt.T - 1.0) / float(eps))
    u, v = None, torch.ones(m, device=device)
    if warm is not None and warm.get("eps") == float(eps) and warm.get("v") is not None and len(warm["v"]) == m:
        v = warm["v"].to(device)
    for _ in range(iterations):
        kv = kernel @ v
        if tol is not None and u is not None and float((u * kv * n - 1.0).abs().max()) < tol:
            break
        u = (1.0 / n) / kv.clamp_min(1e-30)
        v = (1.0 / m) / (kernel.T @ u).clamp_min(1e-30)
    if warm is not None:
        warm.update(eps=float(eps), v=v)
    bary = u[:, None] * (kernel @ (v[:, None] * yt))
    return (bary * n).cpu().numpy()
