"""Health of a translator without labels: can we tell a good map from a failed one with no pairs?

All figures compare translated source vectors with an independent sample of real target vectors:
- mnn_share: share of translated points whose CSLS nearest target is mutual (a right map puts most
  translated points next to a real target point that picks them back);
- mnn_mean_cosine: mean cosine of those mutual pairs (the VecMap/MUSE model-selection criterion);
- nn_mean_cosine: mean cosine of each translated point to its nearest real target point;
- neighbour_consistency: over the mutual pairs (i, j), share of i's 10 nearest source neighbours whose partners
  are among j's 10 nearest target neighbours: a map that is right keeps neighbourhoods, a wrong map that
  still lands near real points does not (a random map scores about 10 / number of pairs).
"""
from __future__ import annotations

import numpy as np

from translators.arrays import unit
from translators.linear import side_stats, to_fit_space
from translators.matching import csls_mutual_nn
from translators.metrics import overlap_at_k

NEIGHBOURS = 10
MAX_PAIRS = 4000


def neighbour_consistency(xf: np.ndarray, yf: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean overlap of k-NN sets of paired rows xf[p] <-> yf[p] (each side searched among its own rows)."""
    if len(xf) <= k:
        return 0.0
    own = np.arange(len(xf))
    return float(overlap_at_k(xf, xf, yf, yf, k, "ip", "ip", self_rows=own).mean())


def health_in_fit_space(zf: np.ndarray, xf: np.ndarray, yf: np.ndarray, seed: int = 0) -> dict:
    """zf: translated source (unit, target fit space), xf: the same source rows (source fit space), yf: target."""
    i, j, cos, csls, nn_cos = csls_mutual_nn(zf, yf)
    if len(i) > MAX_PAIRS:
        keep = np.random.default_rng(seed).choice(len(i), MAX_PAIRS, replace=False)
        pi, pj = i[keep], j[keep]
    else:
        pi, pj = i, j
    return {
        "mnn_share": float(len(i) / max(1, len(zf))),
        "mnn_mean_cosine": float(cos.mean()) if len(i) else 0.0,
        "nn_mean_cosine": float(nn_cos.mean()),
        "neighbour_consistency": neighbour_consistency(xf[pi], yf[pj]),
        "sample": {"source": int(len(zf)), "target": int(len(yf))},
    }


def health_metrics(translator, source: np.ndarray, target: np.ndarray, seed: int = 0, sample: int = 4000) -> dict:
    """Label-free health of any Translator, from unpaired source and target vectors (raw, any scale)."""
    rng = np.random.default_rng(seed)
    xs = source[rng.choice(len(source), min(sample, len(source)), replace=False)]
    ys = target[rng.choice(len(target), min(sample, len(target)), replace=False)]
    s_mean, t_mean = side_stats(xs)["mean"], side_stats(ys)["mean"]
    zf = to_fit_space(translator(xs), t_mean)
    return health_in_fit_space(unit(zf), to_fit_space(xs, s_mean), to_fit_space(ys, t_mean), seed)
