"""mini-vec2vec (Dar et al. 2025, arXiv 2510.02348), reproduced as `fit(..., method="mini-vec2vec")`.

Follows the authors' notebook (repository guy-dar/mini-vec2vec, linear_vec2vec.ipynb) step by step:
0. Each side centred with its training mean and L2-normalised (translators.linear's fit space, which is the
   same thing for unit-length inputs).
1. Anchors: `anchor_runs` times, a subsample of `kmeans_sample` rows per side, k-means with `clusters`
   centres on each side, kernels H C C^T H (double-centred, centres not normalised, as published), and the
   QAP between the two kernels solved by 2-opt from `qap_restarts` random starts, the best objective kept.
   The matched centres of all runs are pooled (30 x 20 = 600 anchor pairs).
2. Relative representations: every row's cosines to its side's anchors; each source row is paired with the
   mean of the `neighbours` target rows whose relative representations are nearest (cosine); Procrustes.
3. Refine-1: `icp_rounds` rounds of: `icp_batch` random source rows, the mean of each one's `icp_neighbours`
   nearest target rows under W, Procrustes, W <- (1 - damping) W + damping W_new (not re-orthogonalised).
4. Refine-2: `final_rounds` rounds of k-means with `final_clusters` centres on the source side and on the
   target side started at the mapped source centres; Procrustes centres -> centres, the same damped update.
Differences from the notebook, because scikit-learn is not a dependency here: k-means is this module's Lloyd
iteration (plain k-means++ start, at most `kmeans_iterations` rounds) where the notebook uses scikit-learn's
KMeans (greedy k-means++, at most 300 rounds, stops at a tolerance); nearest neighbours are exact (torch top-k).
Deterministic for a seed. The PyPI package `mini-vec2vec` is a third party's rewrite (normalised kernels without
centring, refinement on a third of the rows) and was not used as the reference.
"""
from __future__ import annotations

import time

import numpy as np

from translators.arrays import unit
from translators.errors import TranslatorUsageError
from translators.health import health_in_fit_space
from translators.linear import output_config, procrustes, side_stats, to_fit_space
from translators.model import Translator, linear_translator

DEFAULTS = {
    "anchor_runs": 30,        # independent clusterings + QAP matchings pooled into anchors
    "clusters": 20,           # k-means centres per side in each anchor run
    "kmeans_sample": 10000,   # rows per side clustered in each anchor run
    "qap_restarts": 30,       # random 2-opt starts per matching; the best objective wins
    "neighbours": 50,         # target rows averaged into one source row's partner (relative representations)
    "icp_rounds": 100,        # Refine-1 rounds
    "icp_batch": 1000,        # source rows per Refine-1 round
    "icp_neighbours": 50,     # target rows averaged per source row in Refine-1
    "damping": 0.5,           # W <- (1 - damping) W + damping W_new
    "final_clusters": 500,    # Refine-2 k-means centres
    "final_rounds": 1,        # Refine-2 rounds
    "kmeans_iterations": 30,  # Lloyd iterations of every k-means
}
_BLOCK = 2048


def _kmeans(z: np.ndarray, k: int, rng: np.random.Generator, iterations: int, init: np.ndarray | None = None):
    """Euclidean k-means (Lloyd), k-means++ start unless `init` gives the centres; an empty cluster keeps its
    centre. Distances by BLAS (|c|^2 - 2 z.c), blocked; scipy's kmeans2 took 107 s for 500 centres on 4,000 rows."""
    z = np.ascontiguousarray(z, np.float32)
    centres = _kmeans_pp(z, int(min(k, len(z))), rng) if init is None else np.array(init, np.float32)
    for _ in range(iterations):
        labels = _nearest_centre(z, centres)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, z)
        counts = np.bincount(labels, minlength=len(centres))
        filled = counts > 0
        new = centres.copy()
        new[filled] = sums[filled] / counts[filled, None]
        if np.allclose(new, centres, atol=1e-6):
            break
        centres = new
    return centres


def _nearest_centre(z, centres):
    sq = np.sum(centres * centres, axis=1)
    return np.concatenate([np.argmin(sq[None, :] - 2 * (z[s:s + _BLOCK] @ centres.T), axis=1)
                           for s in range(0, len(z), _BLOCK)])


def _kmeans_pp(z, k, rng):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre drawn with probability ~ D(x)^2."""
    centres = np.empty((k, z.shape[1]), np.float32)
    centres[0] = z[rng.integers(len(z))]
    d2 = np.sum((z - centres[0]) ** 2, axis=1)
    for c in range(1, k):
        centres[c] = z[rng.choice(len(z), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(z))]
        d2 = np.minimum(d2, np.sum((z - centres[c]) ** 2, axis=1))
    return centres


def _double_centred_kernel(c: np.ndarray) -> np.ndarray:
    """H C C^T H with H the centring matrix (the notebook's `sim(C, C)`)."""
    c = c.astype(np.float64)
    h = np.eye(len(c)) - 1.0 / len(c)
    return h @ c @ c.T @ h


def match_centres(ca: np.ndarray, cb: np.ndarray, rng: np.random.Generator, restarts: int) -> np.ndarray:
    """Permutation p maximising trace(Ka P Kb P^T): cb[p] is matched to ca (best of `restarts` 2-opt runs)."""
    from scipy.optimize import quadratic_assignment

    ka, kb = _double_centred_kernel(ca), _double_centred_kernel(cb)
    best = None
    for _ in range(restarts):
        res = quadratic_assignment(ka, kb, method="2opt",
                                   options={"maximize": True, "rng": np.random.default_rng(rng.integers(2 ** 63))})
        if best is None or res.fun > best.fun:
            best = res
    return best.col_ind


def anchor_pairs(xs, ys, rng, opt) -> tuple[np.ndarray, np.ndarray]:
    """Pooled matched k-means centres (source (m, d_s), target (m, d_t)) of `anchor_runs` runs."""
    src, tgt = [], []
    for _ in range(int(opt["anchor_runs"])):
        xa = xs[rng.permutation(len(xs))[:int(opt["kmeans_sample"])]]
        yb = ys[rng.permutation(len(ys))[:int(opt["kmeans_sample"])]]
        ca = _kmeans(xa, int(opt["clusters"]), rng, int(opt["kmeans_iterations"]))
        cb = _kmeans(yb, int(opt["clusters"]), rng, int(opt["kmeans_iterations"]))
        perm = match_centres(ca, cb, rng, int(opt["qap_restarts"]))
        src.append(ca)
        tgt.append(cb[perm])
    return np.concatenate(src), np.concatenate(tgt)


def mean_of_nearest(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Row i: the mean of the `values` rows whose `keys` have the k highest cosines to queries[i]."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(unit(queries), np.float32))
    kt = torch.from_numpy(np.ascontiguousarray(unit(keys), np.float32))
    k = int(min(k, len(keys)))
    out = np.empty((len(queries), values.shape[1]), np.float32)
    for s in range(0, len(q), _BLOCK):
        top = torch.topk(q[s:s + _BLOCK] @ kt.T, k, dim=1).indices.numpy()
        out[s:s + _BLOCK] = values[top].mean(axis=1)
    return out


def relative_start(xs, ys, src_anchors, tgt_anchors, neighbours: int) -> np.ndarray:
    """Procrustes of each source row onto the mean of its nearest target rows in anchor-relative space."""
    rel_x, rel_y = unit(xs) @ unit(src_anchors).T, unit(ys) @ unit(tgt_anchors).T
    return procrustes(xs, mean_of_nearest(rel_x, rel_y, ys, neighbours))


def closest_point_rounds(w, xs, ys, rng, opt) -> np.ndarray:
    """Refine-1 (iterative closest-point averaging with a damped update)."""
    a = float(opt["damping"])
    for _ in range(int(opt["icp_rounds"])):
        xb = xs[rng.permutation(len(xs))[:int(opt["icp_batch"])]]
        w_new = procrustes(xb, mean_of_nearest(xb @ w, ys, ys, int(opt["icp_neighbours"])))
        w = (1 - a) * w + a * w_new
    return w


def cluster_correction(w, xs, ys, rng, opt) -> np.ndarray:
    """Refine-2: source k-means centres, target k-means started at their images, Procrustes between them."""
    a, it = float(opt["damping"]), int(opt["kmeans_iterations"])
    for _ in range(int(opt["final_rounds"])):
        c1 = _kmeans(xs, int(opt["final_clusters"]), rng, it)
        c2 = _kmeans(ys, len(c1), rng, it, init=c1 @ w)
        w = (1 - a) * w + a * procrustes(c1, c2)
    return w


def fit_minivec2vec(source, target, pairs=None, seed: int = 0, device: str = "cpu", progress: bool = False,
                    **options) -> Translator:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TranslatorUsageError(f"unknown option(s) for method 'mini-vec2vec': {sorted(unknown)}.",
                                   f"use only: {', '.join(sorted(DEFAULTS))}.")
    if pairs is not None:
        raise TranslatorUsageError("method 'mini-vec2vec' is unsupervised and takes no pairs.",
                                   "drop the pairs, or use method 'auto' (anchored by pairs) or 'ridge'.")
    opt = {**DEFAULTS, **options}
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    s_stats, t_stats = side_stats(source), side_stats(target)
    xs, ys = to_fit_space(source, s_stats["mean"]), to_fit_space(target, t_stats["mean"])

    def say(msg):
        if progress:
            print(f"[mini-vec2vec {time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    src_anchors, tgt_anchors = anchor_pairs(xs, ys, rng, opt)
    say(f"{len(src_anchors)} anchor pairs from {opt['anchor_runs']} QAP matchings")
    w = relative_start(xs, ys, src_anchors, tgt_anchors, int(opt["neighbours"]))
    say("relative-representation start")
    w = closest_point_rounds(w, xs, ys, rng, opt)
    say(f"{opt['icp_rounds']} closest-point rounds")
    w = cluster_correction(w, xs, ys, rng, opt)
    say("cluster correction")

    eval_rows = np.random.default_rng([seed, 1]).permutation(min(len(xs), len(ys)))[:3000]
    xe, ye = xs[eval_rows[eval_rows < len(xs)]], ys[eval_rows[eval_rows < len(ys)]]
    health = health_in_fit_space(unit(xe @ w), xe, ye, seed)
    cfg = {"method": "mini-vec2vec", "seed": int(seed), **output_config(t_stats),
           "options": {k: opt[k] for k in sorted(DEFAULTS)},
           "training_data": {"source_rows": int(len(source)), "target_rows": int(len(target)), "pairs": 0}}
    return linear_translator(w, s_stats["mean"], t_stats["mean"], cfg,
                             {"health": health, "fit_seconds": time.perf_counter() - started})
