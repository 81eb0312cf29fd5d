"""Does a model pair look alignable WITHOUT pairs? A label-free probe that runs in about a second.

Every unsupervised method here ('auto', 'mini-vec2vec', vec2vec) looks for an isometry (a rotation of the
centred, normalised space) that makes the source sample look like the target sample. A rotation keeps
every local statistic, so when the two models' neighbourhoods are shaped differently no rotation can match
them, and the unpaired objectives drift away from the right map even when started AT it (minilm -> e5:
fit-space top-1 0.978 at the supervised map, 0.73 after 24 optimal-transport rounds on 12,000 rows per
side, 0.60 after 30 of mini-vec2vec's closest-point rounds; docs/translators.md). The probe measures that
shape on each side, on the same number of rows:
- local intrinsic dimension (Levina & Bickel's maximum-likelihood estimate from the 10 nearest neighbours,
  median over rows): how many directions a neighbourhood spreads in;
- neighbourhood clustering: the share of a row's 10 nearest neighbours that are neighbours of each other.
Measured on the shared PyPI data (4,000 rows per side): minilm 26, l3 29, mpnet 25, e5 36 (clustering 0.20 /
0.18 / 0.21 / 0.14). The pairs that align without pairs differ by at most 10% in dimension (l3 / minilm);
every pair with e5 by 31-36% and fails. The decision is `alignable` when the two dimensions differ by less
than MAX_LOG_RATIO in log (22%), halfway in log between the two groups. It is a necessary condition, not a
proof: a pair that passes can still fail (train's health figures check the result), and the threshold
rests on four models.
"""
from __future__ import annotations

import numpy as np

from translators.arrays import as_matrix, unit
from translators.linear import side_stats, to_fit_space

NEIGHBOURS = 10
MAX_ROWS = 4000
MIN_ROWS = 200
MAX_LOG_RATIO = 0.2  # |log(lid_source / lid_target)| above this: "needs pairs"
_BLOCK = 2048


def _nearest(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, k) and cosines (n, k), best first, of each unit row's k nearest other rows."""
    idx = np.empty((len(z), k), np.int64)
    cos = np.empty((len(z), k), np.float32)
    for s in range(0, len(z), _BLOCK):
        sims = z[s:s + _BLOCK] @ z.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf  # not itself
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-vals, axis=1)
        idx[s:s + _BLOCK] = np.take_along_axis(part, order, axis=1)
        cos[s:s + _BLOCK] = np.take_along_axis(vals, order, axis=1)
    return idx, cos


def local_geometry(z: np.ndarray, k: int = NEIGHBOURS) -> dict:
    """Local intrinsic dimension (median MLE) and neighbourhood clustering of unit rows z."""
    from scipy.sparse import csr_matrix

    idx, cos = _nearest(z, k)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * cos.astype(np.float64), 1e-12))  # chord length on the sphere
    logs = np.log(dist[:, :-1] / dist[:, -1:])
    lid = -1.0 / np.minimum(logs.mean(axis=1), -1e-12)
    n = len(z)
    adj = csr_matrix((np.ones(n * k, np.float32), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    triangles = np.asarray((adj @ adj).multiply(adj).sum(axis=1)).ravel()
    return {"intrinsic_dim": float(np.median(lid)), "clustering": float(np.mean(triangles / (k * (k - 1))))}


def probe(source_sample, target_sample, seed: int = 0, max_rows: int = MAX_ROWS) -> dict:
    """Label-free guess whether `source_sample` (n_s, d_s) and `target_sample` (n_t, d_t), unpaired vectors of
    two models, can be aligned without known pairs. Returns the decision and the figures behind it:
    {alignable, reason, source/target intrinsic_dim and clustering, log_ratio, threshold, rows}."""
    xs = as_matrix(source_sample, where="source sample")
    ys = as_matrix(target_sample, where="target sample")
    rows = int(min(len(xs), len(ys), max_rows))  # the same count both sides: the estimates depend on it
    if rows < MIN_ROWS:
        return {"alignable": True, "decided": False, "rows": rows,
                "reason": f"too few rows to probe ({rows} < {MIN_ROWS} per side)"}
    rng = np.random.default_rng(seed)
    xs, ys = xs[rng.choice(len(xs), rows, replace=False)], ys[rng.choice(len(ys), rows, replace=False)]
    src = local_geometry(unit(to_fit_space(xs, side_stats(xs)["mean"])))
    tgt = local_geometry(unit(to_fit_space(ys, side_stats(ys)["mean"])))
    log_ratio = float(np.log(src["intrinsic_dim"] / tgt["intrinsic_dim"]))
    alignable = abs(log_ratio) <= MAX_LOG_RATIO
    reason = (f"local intrinsic dimension {src['intrinsic_dim']:.1f} (source) vs {tgt['intrinsic_dim']:.1f} "
              f"(target): {'within' if alignable else 'beyond'} {np.expm1(MAX_LOG_RATIO):.0%}")
    return {"alignable": bool(alignable), "decided": True, "reason": reason, "rows": rows,
            "source_intrinsic_dim": round(src["intrinsic_dim"], 3), "target_intrinsic_dim": round(tgt["intrinsic_dim"], 3),
            "source_clustering": round(src["clustering"], 4), "target_clustering": round(tgt["clustering"], 4),
            "log_ratio": round(log_ratio, 4), "threshold": MAX_LOG_RATIO}
