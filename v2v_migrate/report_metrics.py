"""Pure-numpy measurements behind `v2v-migrate report` (no store access here).

Similarity follows the store metric: cosine -> dot of unit rows, ip -> dot, l2 -> minus squared distance,
so "larger is closer" everywhere. Work is done in query blocks so memory stays bounded
(block x candidates float32).
"""
from __future__ import annotations

import numpy as np

from translators.arrays import unit
from translators.metrics import overlap_at_k, similarity, topk_rows

_BLOCK = 256  # query rows scored at once


def recall_curve(queries: np.ndarray, query_rows: np.ndarray, true_docs: np.ndarray,
                 translated_docs: np.ndarray, metric: str, max_k: int = 100) -> np.ndarray:
    """recall@k for k = 1..max_k of search over the translated documents, against exact search over the
    true new-model documents.

    Query j (vector `queries[j]`, the true new-model vector of document `query_rows[j]`) searches among
    every document except its own (self excluded on both sides, otherwise the true side would always
    find itself first). Ground truth: its exact top-k among `true_docs`; measured: its top-k among
    `translated_docs` (same rows, translated from the old model). recall@k = mean |truth ∩ found| / k.
    """
    n = len(true_docs)
    max_k = int(min(max_k, n - 1))
    if max_k < 1:
        return np.zeros(0)
    hits = np.zeros(max_k, dtype=np.float64)
    for b in range(0, len(queries), _BLOCK):
        qb, rows = queries[b:b + _BLOCK], query_rows[b:b + _BLOCK]
        st = similarity(qb, true_docs, metric)
        sp = similarity(qb, translated_docs, metric)
        st[np.arange(len(rows)), rows] = -np.inf
        sp[np.arange(len(rows)), rows] = -np.inf
        truth, found = topk_rows(st, max_k), topk_rows(sp, max_k)
        for t_row, f_row in zip(truth, found):
            # position at which each truth doc is found (max_k when not in the found list)
            pos_in_found = np.full(n, max_k, dtype=np.int64)
            pos_in_found[f_row] = np.arange(max_k)
            # a truth doc at truth position i counts for every k > max(i, its found position)
            first_k = np.maximum(np.arange(max_k), pos_in_found[t_row])
            counts = np.bincount(first_k[first_k < max_k], minlength=max_k)
            hits += np.cumsum(counts)
    ks = np.arange(1, max_k + 1)
    return hits / (len(queries) * ks)


def neighbour_overlap(a: np.ndarray, a_metric: str, b: np.ndarray, b_metric: str, k: int = 10) -> np.ndarray:
    """Per row i: |top-k neighbours of a_i among a (self excluded) ∩ same for b_i among b| / k.

    Rows of a and b are two versions of the same items (e.g. source vectors and their translations).
    """
    return overlap_at_k(a, a, b, b, k, a_metric, b_metric, self_rows=np.arange(len(a)))


def nearest_similarity(queries: np.ndarray, docs: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Per query: the similarity of its nearest document (used to check translations land among real
    new-model vectors, not in an empty region of the space)."""
    out = np.empty(len(queries), dtype=np.float64)
    for b in range(0, len(queries), _BLOCK):
        out[b:b + _BLOCK] = similarity(queries[b:b + _BLOCK], docs, metric).max(axis=1)
    return out


def norm_stats(x: np.ndarray) -> dict:
    n = np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1)
    if len(n) == 0:
        return {"n": 0}
    return {"n": int(len(n)), "mean": float(n.mean()), "std": float(n.std()),
            "min": float(n.min()), "max": float(n.max())}


def non_finite_rows(x: np.ndarray) -> int:
    x = np.asarray(x)
    return int((~np.isfinite(x).all(axis=1)).sum()) if x.size else 0


def mean_pairwise_cosine(x: np.ndarray, max_rows: int = 2000) -> float:
    """Mean cosine between distinct rows (≈ 1 means everything collapsed onto one direction)."""
    u = unit(x[:max_rows]).astype(np.float64)
    n = len(u)
    if n < 2:
        return float("nan")
    s = u.sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = 40) -> dict:
    counts, edges = np.histogram(np.clip(np.asarray(values, dtype=np.float64), lo, hi), bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.astype(int).tolist()}


def rank_cdf(ranks: np.ndarray, max_rank: int = 100) -> dict:
    """Share of items whose true target ranks <= r, for r = 1..max_rank."""
    r = np.asarray(ranks)
    rs = np.arange(1, max_rank + 1)
    return {"rank": rs.tolist(), "share": [round(float(np.mean(r <= x)), 6) for x in rs]}


def exact_topk_streaming(queries: np.ndarray, batches, metric: str, k: int):
    """Exact top-k over a stream of (ids, vectors) batches: (list of id lists, sims) per query.

    Bounded memory: keeps k candidates per query plus one batch.
    """
    q = np.asarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=object)
    for ids, vecs in batches:
        s = similarity(q, vecs, metric).astype(np.float32)
        ids_arr = np.empty(len(ids), dtype=object)
        ids_arr[:] = list(ids)
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids_arr, s.shape)], axis=1)
        top = topk_rows(all_s, k)
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    return [list(r) for r in best_i], best_s
