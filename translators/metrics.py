"""Paired fidelity metrics (pure numpy, bounded memory).

`pred[i]` is the translation of source vector i and `target[i]` the true target-model vector of the same
text. Retrieval metrics follow the vec2vec paper: the candidate pool for row i is the chunk of `pool`
consecutive held-out true target vectors that contains row i (the whole set when n <= pool), ranked by
cosine similarity. Ties count in the prediction's favour (rank = 1 + number of strictly better candidates).
"""
from __future__ import annotations

import numpy as np

from translators.arrays import unit
from translators.errors import DimensionMismatchError, InvalidVectorsError

_ROW_BLOCK = 1024  # rows scored at once: a block x pool float32 matrix (1024 x 8192 = 32 MB)



def _check_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if pred.ndim != 2 or target.ndim != 2:
        raise InvalidVectorsError(f"metrics need 2-D arrays, got shapes {pred.shape} and {target.shape}.",
                                  "pass one vector per row.")
    if pred.shape != target.shape:
        raise DimensionMismatchError(
            f"predictions {pred.shape} and targets {target.shape} differ in shape.",
            "pass the translated vectors and the true target vectors of the same rows, in the same order.")
    if len(pred) == 0:
        raise InvalidVectorsError("metrics need at least one pair, got none.", "pass a non-empty held-out set.")
    return pred, target


def mean_cosine(pred, target) -> float:
    """Mean cosine similarity of each prediction with its own true target."""
    pred, target = _check_pair(pred, target)
    return float(np.mean(np.sum(unit(pred) * unit(target), axis=1, dtype=np.float64)))


def ranks(pred, target, pool: int = 8192) -> np.ndarray:
    """1-based rank of target[i] among its pool chunk when ordered by cosine with pred[i] (int64, (n,))."""
    pred, target = _check_pair(pred, target)
    if pool < 1:
        raise InvalidVectorsError(f"pool must be >= 1, got {pool}.", "use the default pool of 8192.")
    p, t = unit(pred), unit(target)
    n = len(p)
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, pool):
        stop = min(start + pool, n)
        cand = t[start:stop]
        for b in range(start, stop, _ROW_BLOCK):
            e = min(b + _ROW_BLOCK, stop)
            sims = p[b:e] @ cand.T                                  # (block, pool chunk)
            own = sims[np.arange(e - b), np.arange(b - start, e - start)]
            out[b:e] = 1 + np.sum(sims > own[:, None], axis=1)
    return out


def top1(pred, target, pool: int = 8192) -> float:
    """Share of rows whose nearest candidate (cosine) is their own true target."""
    return float(np.mean(ranks(pred, target, pool) == 1))


def mean_rank(pred, target, pool: int = 8192) -> float:
    """Mean 1-based rank of the true target (random guessing gives about pool/2)."""
    return float(np.mean(ranks(pred, target, pool)))


def recall_at_k(pred, target, k: int = 10, pool: int = 8192) -> float:
    """Share of rows whose true target is among the k nearest candidates."""
    return float(np.mean(ranks(pred, target, pool) <= k))


def paired_metrics(pred, target, pool: int = 8192) -> dict:
    """{'mean_cosine', 'top1', 'mean_rank', 'n', 'pool'} in one pass over the similarity blocks."""
    r = ranks(pred, target, pool)
    return {
        "mean_cosine": mean_cosine(pred, target),
        "top1": float(np.mean(r == 1)),
        "mean_rank": float(np.mean(r)),
        "n": int(len(r)),
        "pool": int(min(pool, len(r))),
    }


def similarity(queries, docs, metric: str = "cosine") -> np.ndarray:
    """(q, n) similarities, larger = closer: cosine, ip (dot), or l2 (minus squared distance, up to a
    per-query constant that leaves every ranking unchanged)."""
    q, d = np.asarray(queries, dtype=np.float32), np.asarray(docs, dtype=np.float32)
    if metric == "cosine":
        return unit(q) @ unit(d).T
    if metric == "ip":
        return q @ d.T
    return 2.0 * (q @ d.T) - np.sum(d * d, axis=1)[None, :]


def topk_rows(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each row, best first."""
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def overlap_at_k(queries_a, docs_a, queries_b, docs_b, k: int = 10, metric_a: str = "cosine",
                 metric_b: str = "cosine", self_rows=None) -> np.ndarray:
    """Per query i: |top-k of queries_a[i] among docs_a ∩ top-k of queries_b[i] among docs_b| / k.

    The one top-k overlap kernel behind neighbour consistency (two spaces' own neighbourhoods), the
    report's neighbour overlap and retrieval retention (one query searching two versions of the documents).
    self_rows[i]: a document excluded on both sides for query i (the query's own row), or None.
    """
    qa, qb = np.asarray(queries_a, np.float32), np.asarray(queries_b, np.float32)
    n = min(len(docs_a), len(docs_b)) - (1 if self_rows is not None else 0)
    k = int(min(k, n))
    out = np.zeros(len(qa), dtype=np.float64)
    if k < 1:
        return out
    for s in range(0, len(qa), _ROW_BLOCK):
        e = min(s + _ROW_BLOCK, len(qa))
        sa, sb = similarity(qa[s:e], docs_a, metric_a), similarity(qb[s:e], docs_b, metric_b)
        if self_rows is not None:
            rows = np.asarray(self_rows[s:e])
            sa[np.arange(e - s), rows] = sb[np.arange(e - s), rows] = -np.inf
        ta, tb = topk_rows(sa, k), topk_rows(sb, k)
        for i, (ra, rb) in enumerate(zip(ta, tb)):
            out[s + i] = len(np.intersect1d(ra, rb, assume_unique=True)) / k
    return out


def neighbour_recall(queries, translated, reference, k: int = 10) -> float:
    """Retrieval retention without labels: mean |top-k(q, translated) ∩ top-k(q, reference)| / k.

    `translated[j]` and `reference[j]` are two versions of document j in the target space (the
    translation and a true re-embedding); `queries` are target-model query vectors. 1.0 means every
    query retrieves the same k documents from the translated index as from a re-embedded one.
    """
    tr, rf = _check_pair(translated, reference)
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != tr.shape[1]:
        raise DimensionMismatchError(f"queries {q.shape} do not match documents {tr.shape}.",
                                     "embed the queries with the target model.")
    return float(overlap_at_k(q, tr, q, rf, k).mean())
