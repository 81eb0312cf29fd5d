"""After-apply checks of a destination store: counts, sampled rows, vectors, payloads, schema, ANN recall.

Everything here only reads the destination. Vectors are compared with what the translator gives for the
source rows; for a cosine destination only the direction is compared, because engines may normalise
vectors on insert (Qdrant does).
"""
from __future__ import annotations

import json
import math

import numpy as np

from connectors.base import ORIGINAL_ID_KEY
from connectors.errors import ConnectorError
from connectors.schema import carry, compare
from v2v_migrate.provenance import MARKER, embedded_by
from v2v_migrate import report_metrics as rm

MAX_LISTED = 20  # bad rows listed by id in the report (the counts cover them all)


def _canonical_payload(p) -> str:
    """Payloads compare equal whatever the engine did to key order or number types (int64 vs int)."""
    p = {k: v for k, v in (p or {}).items() if k not in (ORIGINAL_ID_KEY, MARKER)}  # our keys, not the source's

    def norm(v):
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, np.ndarray)):
            return [norm(x) for x in v]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    return json.dumps(norm(p), sort_keys=True, default=str)


def vector_errors(expected: np.ndarray, stored: np.ndarray, metric: str) -> np.ndarray:
    """Per row: the difference between the stored and the expected vector, relative to the expected norm
    (max over coordinates). Cosine: both sides unit-normalised first."""
    e = np.asarray(expected, dtype=np.float64)
    s = np.asarray(stored, dtype=np.float64)
    if metric == "cosine":
        e, s = rm.unit(e).astype(np.float64), rm.unit(s).astype(np.float64)
        return np.max(np.abs(e - s), axis=1)
    scale = np.maximum(np.linalg.norm(e, axis=1), 1e-12)
    return np.max(np.abs(e - s), axis=1) / scale


def check_rows(source_batch, dest, translate, tolerance: float) -> dict:
    """Compare sampled source rows with the destination's copies of them."""
    ids = list(source_batch.ids)
    got = dest.get(ids)
    pos = {x: i for i, x in enumerate(got.ids)}
    missing = [x for x in ids if x not in pos]
    present = [x for x in ids if x in pos]
    src_idx = [i for i, x in enumerate(ids) if x in pos]
    out = {"sampled": len(ids), "present": len(present), "missing": len(missing),
           "missing_ids": [_jsonable_id(x) for x in missing[:MAX_LISTED]],
           "tolerance": tolerance, "metric": dest.metric}
    if not present:
        out.update(vector_mismatches=0, payload_mismatches=0, non_finite=0, bad_rows=[])
        return out
    stored = np.asarray(got.vectors, dtype=np.float32)[[pos[x] for x in present]]
    expected = translate(source_batch.vectors[src_idx])
    finite = np.isfinite(stored).all(axis=1)
    err = np.full(len(present), np.inf)
    err[finite] = vector_errors(expected[finite], stored[finite], dest.metric)
    # Rows `reembed` replaced hold the new model's own vector, not the translation: not compared here.
    dst_all = got.payloads or [None] * len(got.ids)
    embedded = np.array([embedded_by(dst_all[pos[x]]) is not None for x in present], dtype=bool)
    bad_vec = (err > tolerance) & ~embedded
    bad_pay = np.zeros(len(present), dtype=bool)
    src_pay = source_batch.payloads
    if src_pay is not None:
        dst_pay = got.payloads or [None] * len(got.ids)
        for j, x in enumerate(present):
            bad_pay[j] = _canonical_payload(src_pay[src_idx[j]]) != _canonical_payload(dst_pay[pos[x]])
    bad = np.flatnonzero(bad_vec | bad_pay | ~finite)
    out.update(
        non_finite=int((~finite).sum()),
        embedded_not_compared=int(embedded.sum()),
        vector_mismatches=int(bad_vec.sum()),
        payload_mismatches=int(bad_pay.sum()),
        payloads_compared=src_pay is not None,
        max_vector_error=float(np.max(err[~embedded])) if (~embedded).any() else 0.0,
        mean_vector_error=float(np.mean(err[finite & ~embedded])) if (finite & ~embedded).any() else None,
        bad_rows=[{"id": _jsonable_id(present[j]), "vector_error": _finite_or_none(err[j]),
                   "payload_differs": bool(bad_pay[j]), "non_finite": bool(not finite[j]),
                   "source_payload": (src_pay[src_idx[j]] if src_pay is not None else None)}
                  for j in bad[:MAX_LISTED]],
    )
    return out


def _finite_or_none(x: float):
    return float(x) if math.isfinite(float(x)) else None


def _jsonable_id(x):
    return x.item() if isinstance(x, np.generic) else x


def compare_schemas(source, dest) -> dict:
    """The destination's schema against what the source's carries to its engine (connectors.schema):
    differences in words (a vector dropped with --drop-vector shows as missing), and what no destination of
    that engine can keep."""
    try:
        src, dst = source.describe_schema(), dest.describe_schema()
        expected = carry(src, dest.flavor, dim=dest.dim, metric=dest.metric)
    except ConnectorError as e:
        return {"compared": False, "reason": e.message}
    return {"compared": True, "differences": compare(expected["schema"], dst), "not_carried": expected["not_carried"],
            "not_holdable": expected["unholdable"], "source": src, "dest": dst}


def search_method(store):
    """The store's own k-NN search, or None. Expected: search(queries float32 (q, d), k) returning either
    (ids per query, scores) or a list of id lists."""
    fn = getattr(store, "search", None)
    return fn if callable(fn) else None


def _ids_from_search(result) -> list[list]:
    if isinstance(result, tuple) and len(result) == 2:
        result = result[0]
    if hasattr(result, "ids") and not isinstance(result, (list, np.ndarray)):
        result = result.ids
    return [list(r) for r in result]


def ann_recall(dest, queries: np.ndarray, k: int = 10, batch_size: int = 4096) -> dict:
    """recall@k of the destination's own search against exact search over every destination row.

    Exact search streams the whole destination once (bounded memory: k candidates per query).
    """
    search = search_method(dest)
    if search is None:
        return {"measured": False, "k": k,
                "reason": f"the destination ({getattr(dest, 'scheme', type(dest).__name__)}) has no search engine of its "
                          "own (Parquet is a file format): ANN recall does not apply; the quality figures use exact "
                          "search."}
    q = np.ascontiguousarray(queries, dtype=np.float32)
    exact_ids, _ = rm.exact_topk_streaming(q, ((b.ids, b.vectors) for b in dest.iter_batches(batch_size)),
                                           dest.metric, k)
    found = _ids_from_search(search(q, k))
    per_query = [len(set(map(_jsonable_id, f[:k])) & set(map(_jsonable_id, e))) / max(1, len(e))
                 for f, e in zip(found, exact_ids)]
    return {"measured": True, "k": k, "queries": len(q), "recall": float(np.mean(per_query)),
            "min_query_recall": float(np.min(per_query))}
