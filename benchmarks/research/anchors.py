"""Unsupervised initial maps from matched cluster anchors (mini-vec2vec, arXiv 2510.02348).

Why: similarity profiles and one Gromov-Wasserstein coupling of 128 centroids often land in a wrong basin
(minilm -> e5 gave top-1 ~ 0). Small-k centroid geometries are stable across samples, so many cheap
matchings of FEW centroids, pooled, give enough correct anchors for the rest:

1. Anchor sets: spherical k-means with a small k on a subsample of each side; both centroid similarity
   matrices double-centred; a QAP (`scipy.optimize.quadratic_assignment`, FAQ, many random starts; the QAP
   objective itself picks the start, no labels) matches source to target centroids. Repeated with fresh
   clusterings, the anchor pairs are pooled: a wrong matching in one run is outvoted by the others.
2. Pseudo pairs by relative representation: each point is described by its cosines to its side's anchors
   (centred, normalised); every source point gets the mean of its `neighbours` nearest target points in that
   relative space as a soft target; Procrustes on (x, soft target) gives the first map.
3. Iterative closest-point averaging (mini-vec2vec's Refine-1): translate, average each source point's nearest
   target points in absolute space, Procrustes, damped update. Soft targets keep it from locking onto the
   wrong mutual nearest neighbours the way hard CSLS rounds do from a weak start.

All maps are d_s x d_t semi-orthogonal matrices in the fit space of translators.linear (rows unit, centred,
unit); the caller refines them further and ranks them with its own unsupervised criterion.
Deterministic for a given numpy Generator.
"""
from __future__ import annotations

import time

import numpy as np

from translators.linear import procrustes, unit
from translators.matching import spherical_kmeans

DEFAULTS = {
    "sample": 6000,          # vectors per side used for pseudo pairs and refinement
    "kmeans_sample": 4000,   # vectors per side clustered in each anchor run
    "runs": 24,              # independent clusterings + QAP matchings pooled per candidate
    "qap_restarts": 30,      # random FAQ starts per matching; the best objective wins
    "neighbours": 50,        # target points averaged into one soft target
    "icp_rounds": 30,        # closest-point averaging rounds
    "icp_batch": 2000,       # source points per closest-point round
    "icp_neighbours": 20,
}
CLUSTER_SIZES = (20, 32)     # one candidate per k: different granularities fail on different pairs


def _double_centred(c: np.ndarray) -> np.ndarray:
    """Centroid cosine matrix with row and column means removed (as mini-vec2vec's kernel): the common
    offset that every centroid similarity carries says nothing about which centroid is which."""
    k = c @ c.T
    return (k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()).astype(np.float64)


def _signature_start(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """Permutation matrix pairing centroids by their sorted kernel rows (rotation and order invariant):
    a start near the right basin, where random FAQ starts rarely land once k >= 16."""
    from scipy.optimize import linear_sum_assignment

    sa, sb = -np.sort(-ka, axis=1), -np.sort(-kb, axis=1)
    cost = ((sa[:, None, :] - sb[None, :, :]) ** 2).sum(axis=2)
    _, cols = linear_sum_assignment(cost)
    return np.eye(len(kb))[cols]


def match_centroids(ca: np.ndarray, cb: np.ndarray, rng: np.random.Generator, restarts: int):
    """Permutation p (cb[p] matches ca) maximising sum_ij Ka_ij Kb_p(i)p(j): best of a signature start and
    `restarts` random FAQ starts, each polished by 2-opt swaps."""
    from scipy.optimize import quadratic_assignment

    ka, kb = _double_centred(ca), _double_centred(cb)
    starts = [_signature_start(ka, kb)] + ["randomized"] * restarts
    best = None
    for p0 in starts:
        res = quadratic_assignment(ka, kb, method="faq",
                                   options={"maximize": True, "P0": p0,
                                            "rng": np.random.default_rng(rng.integers(2 ** 63))})
        if best is None or res.fun > best.fun:
            best = res
    best = quadratic_assignment(ka, kb, method="2opt",
                                options={"maximize": True,
                                         "partial_guess": np.column_stack([np.arange(len(ka)), best.col_ind]),
                                         "rng": np.random.default_rng(rng.integers(2 ** 63))})
    return best.col_ind, float(best.fun)


def anchor_pairs(xs, ys, rng, k: int, runs: int, restarts: int, kmeans_sample: int, deadline: float):
    """Pooled matched centroids (source (m, d_s), target (m, d_t)) of up to `runs` clusterings."""
    src, tgt = [], []
    for _ in range(runs):
        xa = xs[rng.choice(len(xs), min(kmeans_sample, len(xs)), replace=False)]
        yb = ys[rng.choice(len(ys), min(kmeans_sample, len(ys)), replace=False)]
        ca, _ = spherical_kmeans(xa, k, rng)
        cb, _ = spherical_kmeans(yb, k, rng)
        perm, _ = match_centroids(ca, cb, rng, restarts)
        src.append(ca)
        tgt.append(cb[perm])
        if time.perf_counter() > deadline:
            break
    return np.concatenate(src), np.concatenate(tgt)


def _relative(z: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    r = z @ anchors.T
    return unit(r - r.mean(axis=0, keepdims=True))


def _soft_targets(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, neighbours: int) -> np.ndarray:
    """Mean of the `values` rows whose `keys` are the nearest to each query (cosine), unit length."""
    kk = int(min(neighbours, len(keys)))
    out = np.empty((len(queries), values.shape[1]), np.float32)
    for s in range(0, len(queries), 2048):
        sims = queries[s:s + 2048] @ keys.T
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        out[s:s + 2048] = values[top].mean(axis=1)
    return unit(out)


def relative_map(xs, ys, src_anchors, tgt_anchors, neighbours: int) -> np.ndarray:
    """Procrustes on (x, mean of x's nearest target points in the shared anchor-relative space)."""
    soft = _soft_targets(_relative(xs, src_anchors), _relative(ys, tgt_anchors), ys, neighbours)
    return procrustes(xs, soft)


def closest_point_refine(w, xs, ys, rng, rounds: int, batch: int, neighbours: int, deadline: float):
    """Damped Procrustes on soft nearest-neighbour targets (mini-vec2vec Refine-1), re-orthogonalised."""
    for _ in range(rounds):
        xb = xs[rng.choice(len(xs), min(batch, len(xs)), replace=False)]
        soft = _soft_targets(unit(xb @ w), ys, ys, neighbours)
        w_new = procrustes(xb, soft)
        w = procrustes_polar(0.5 * w + 0.5 * w_new)
        if time.perf_counter() > deadline:
            break
    return w


def procrustes_polar(m: np.ndarray) -> np.ndarray:
    """Nearest semi-orthogonal matrix to m (keeps the damped average a rotation)."""
    u, _, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def init_candidates(xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator, budget_s: float = 60,
                    **options) -> list[tuple[str, np.ndarray]]:
    """Named initial maps (d_s x d_t) from unpaired fit-space samples xs (n, d_s) and ys (m, d_t).

    One candidate per cluster size in CLUSTER_SIZES; the time budget is split evenly between them and
    each stops early (fewer runs / rounds) when its share is spent, so the list is never empty.
    """
    opt = {**DEFAULTS, **options}
    started = time.perf_counter()
    xs = xs[rng.choice(len(xs), min(opt["sample"], len(xs)), replace=False)]
    ys = ys[rng.choice(len(ys), min(opt["sample"], len(ys)), replace=False)]
    sizes = [k for k in CLUSTER_SIZES if k <= min(len(xs), len(ys)) // 4] or [max(2, min(len(xs), len(ys)) // 4)]
    out = []
    for n, k in enumerate(sizes):
        share = budget_s * (n + 1) / len(sizes)
        anchors_deadline = started + share - 0.5 * budget_s / len(sizes)
        sa, ta = anchor_pairs(xs, ys, rng, k, opt["runs"], opt["qap_restarts"], opt["kmeans_sample"],
                              anchors_deadline)
        w = relative_map(xs, ys, sa, ta, opt["neighbours"])
        w = closest_point_refine(w, xs, ys, rng, opt["icp_rounds"], opt["icp_batch"], opt["icp_neighbours"],
                                 started + share)
        out.append((f"anchors_k{k}", w))
    return out
