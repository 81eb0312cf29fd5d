"""Four ways to move to the new model, measured side by side, and the rule that picks one (pure numpy).

On n held-out pairs (x old-model, y new-model vectors of the same texts), F the translator (old -> new) and
B the query bridge (new -> old), with queries y_j (each query's own item excluded from the candidates) and
the truth = the exact top-10 of y_j among y (what a full re-embed finds):
  status quo   the old model searching itself:       x_j  among x
  bridge       new-model queries mapped to old space: B(y_j) among x   (the old index untouched: 0 writes)
  migrate      translated stored vectors:             y_j  among F(x)  (what `apply` writes)
  re-embed     the new model searching itself:        y_j  among y     (the ceiling: retention 1.0)
Known-item top-1: the query finds its own document first. For the status quo and re-embed the query and the
document are the same vector (same text, same model), so it is 1.0 by construction, not a measurement.

Progressive re-embedding (`reembed` in nightly slices) mixes the two kinds of documents: `mixed_retention`
measures retention when a share s of F(x) has been replaced by y, from s = 0 (migrate) to 1 (re-embed).
"""
from __future__ import annotations

import numpy as np

from translators.metrics import overlap_at_k, ranks

STRATEGIES = ("status_quo", "bridge", "migrate", "reembed")
LABELS = {"status_quo": "status quo", "bridge": "query bridge", "migrate": "migrate", "reembed": "re-embed"}
K = 10
POOL = 8192
# Bridge and migrate count as equal when their retention differs by less than this: the bridge then wins,
# because it writes nothing and leaves the old index as it is.
TOLERANCE = 0.01
# A full re-embed projected to take at most this long is recommended outright: a job that short is no
# outage worth avoiding, and it reaches the ceiling. Change it with `recommend(..., reembed_budget_s=)`.
REEMBED_BUDGET_S = 3600.0
MIX_SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _mean_se(v: np.ndarray) -> tuple[float, float | None]:
    se = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
    return float(np.mean(v)), se


def strategy_row(y, queries, docs, qrows, metric: str, query_metric: str, known_ranks, k: int = K,
                 note: str | None = None) -> dict:
    """One strategy's figures: retention of `queries` searching `docs` against the new model's exact top-k
    (y_j among y), and the known-item ranks given (1 = the query's own document first)."""
    qrows = np.asarray(qrows, dtype=np.int64)
    kept = overlap_at_k(y[qrows], y, queries, docs, k, metric, query_metric, self_rows=qrows)
    mean, se = _mean_se(kept)
    known = np.asarray(known_ranks)
    return {"retention": mean, "retention_se": se, "known_item_top1": float(np.mean(known == 1)),
            "known_item_mean_rank": float(np.mean(known)), "measured": True, "note": note}


def bridge_row(x, y, bridged_queries, qrows, metric: str = "cosine", source_metric: str = "cosine", k: int = K,
               pool: int = POOL) -> dict:
    """The bridge: B(y_j) searching the old vectors x (the old index, untouched); unmeasured without B."""
    if bridged_queries is None:
        return {"retention": None, "retention_se": None, "known_item_top1": None, "known_item_mean_rank": None,
                "measured": False, "note": "no bridge: train one with `v2v-migrate train --direction new-to-old`"}
    b = np.asarray(bridged_queries, np.float32)
    return strategy_row(y, b[np.asarray(qrows)], x, qrows, metric, source_metric, ranks(b, x, pool), k)


# exact search over the true vectors finds the truth by definition: stated, not measured
REEMBED_ROW = {"retention": 1.0, "retention_se": 0.0, "known_item_top1": 1.0, "known_item_mean_rank": 1.0,
               "measured": False, "note": "the ceiling: the truth is the new model's own top-10"}
SAME_VECTOR = "known-item 1.0 by construction (query = document)"


def compare(x, y, forward_docs, bridged_queries, qrows, metric: str = "cosine", source_metric: str = "cosine",
            k: int = K, pool: int = POOL) -> dict:
    """{strategy: {retention, retention_se, known_item_top1, known_item_mean_rank, measured, note}}.

    forward_docs = F(x) (n, d_new); bridged_queries = B(y) (n, d_old) for every pair, or None (no bridge).
    qrows: the pair rows used as queries.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    f = np.asarray(forward_docs, np.float32)
    qrows = np.asarray(qrows, dtype=np.int64)
    same = np.ones(len(x), dtype=np.int64)  # query == document: rank 1 by construction
    return {"status_quo": strategy_row(y, x[qrows], x, qrows, metric, source_metric, same, k, SAME_VECTOR),
            "bridge": bridge_row(x, y, bridged_queries, qrows, metric, source_metric, k, pool),
            "migrate": strategy_row(y, y[qrows], f, qrows, metric, metric, ranks(y, f, pool), k),
            "reembed": dict(REEMBED_ROW)}


def mixed_retention(y, forward_docs, qrows, metric: str = "cosine", shares=MIX_SHARES, seed: int = 0,
                    k: int = K) -> list[dict]:
    """Retention as the re-embedded share grows: for each share s, a seeded random s of the documents are
    true new-model vectors y, the rest translations F(x); nested sets (a row re-embedded stays so).

    Each query's similarities to both versions of every document are computed once per block of queries;
    a mixed index takes, per document, the one it holds (bounded memory: 2 x block x n float32)."""
    from translators.metrics import similarity, topk_rows

    y, f = np.asarray(y, np.float32), np.asarray(forward_docs, np.float32)
    qrows = np.asarray(qrows, dtype=np.int64)
    n = len(y)
    kk = int(min(k, n - 1))
    order = np.random.default_rng(seed).permutation(n)
    masks = []
    for s in shares:
        m = np.zeros(n, dtype=bool)
        m[order[:int(round(float(s) * n))]] = True
        masks.append(m)
    hits = np.zeros(len(masks))
    for b in range(0, len(qrows), 256):
        rows = qrows[b:b + 256]
        at = np.arange(len(rows))
        sy, sf = similarity(y[rows], y, metric), similarity(y[rows], f, metric)
        sy[at, rows] = sf[at, rows] = -np.inf  # the query's own document is no answer
        truth = topk_rows(sy, kk)
        for i, m in enumerate(masks):
            found = topk_rows(np.where(m[None, :], sy, sf), kk)
            hits[i] += sum(len(np.intersect1d(t, g, assume_unique=True)) for t, g in zip(truth, found))
    return [{"share": float(s), "retention": float(h / max(1, len(qrows) * kk))} for s, h in zip(shares, hits)]


def project_costs(n_rows: int, rates: dict, text_share: float = 1.0) -> dict:
    """{strategy: {writes, seconds, query_ms, limited_by, unknown}} projected to n_rows source rows.

    rates (rows or texts per second, None when unknown): read, translate, bridge, encode, write. A job's
    time is set by its slowest stage (the stages overlap, as in apply); stages of unknown rate are listed
    in `unknown` and left out. Re-embedding writes only the rows that have text (text_share of them).
    """
    def job(rows: int, stages: tuple) -> dict:
        known = {s: float(rates[s]) for s in stages if rates.get(s)}
        unknown = [s for s in stages if not rates.get(s)]
        slow = min(known, key=known.get) if known else None
        seconds = rows / known[slow] if slow and rows else (0.0 if not rows else None)
        return {"writes": int(rows), "seconds": seconds, "limited_by": slow, "unknown": unknown}

    n_text = int(round(n_rows * float(text_share)))
    bridge_ms = 1000.0 / float(rates["bridge"]) if rates.get("bridge") else None
    return {
        "status_quo": {"writes": 0, "seconds": 0.0, "query_ms": 0.0, "limited_by": None, "unknown": []},
        "bridge": {"writes": 0, "seconds": 0.0, "query_ms": bridge_ms, "limited_by": None,
                   "unknown": [] if bridge_ms is not None else ["bridge"]},
        "migrate": {**job(n_rows, ("read", "translate", "write")), "query_ms": 0.0},
        "reembed": {**job(n_text, ("read", "encode", "write")), "query_ms": 0.0, "rows_without_text": n_rows - n_text},
    }


def recommend(figures: dict, costs: dict | None = None, *, tolerance: float = TOLERANCE,
              reembed_budget_s: float = REEMBED_BUDGET_S) -> dict:
    """{'strategy', 'reasons'}: the rule, in order (figures: {strategy: {'retention': float | None}}).

    1. re-embed when its projected time is known and within reembed_budget_s (the ceiling, affordably);
    2. else status quo when neither bridge nor migrate (measured) keeps at least the status quo's retention:
       a translation that knows less than the old model is no step forward (re-embed in slices instead);
    3. else the bridge when it is within `tolerance` of migrate's retention (or migrate falls short of
       the status quo): as good, and zero writes;
    4. else migrate (then `reembed` in slices converges to the ceiling).
    """
    ret = {s: (figures.get(s) or {}).get("retention") for s in STRATEGIES}
    re_s = ((costs or {}).get("reembed") or {}).get("seconds")
    if re_s is not None and re_s <= reembed_budget_s:
        return {"strategy": "reembed", "reasons": [
            f"a full re-embed is projected at {re_s / 60:.1f} min (within {reembed_budget_s / 60:.0f} min): "
            "it reaches the ceiling (retention 1.0) at a cost you can pay now"]}
    sq = ret["status_quo"]
    if sq is None or (ret["bridge"] is None and ret["migrate"] is None):
        return {"strategy": "migrate", "reasons": [
            "retention is not measured yet: migrate is the default (it keeps what the old model knows, and "
            "`reembed` converges it); run `report` (with --bridge) and plan again with --report to compare"]}
    why_slow = (f"a full re-embed is projected at {re_s / 3600:.1f} h" if re_s is not None
                else "the re-embed time is unknown (no encoder rate)")
    ok = {s: ret[s] for s in ("bridge", "migrate") if ret[s] is not None and ret[s] >= sq}
    if not ok:
        shown = ", ".join(f"{LABELS[s]} {ret[s]:.3f}" for s in ("bridge", "migrate") if ret[s] is not None)
        return {"strategy": "status_quo", "reasons": [
            f"{shown}: below the status quo's {sq:.3f}: a translation here knows less than the old model",
            f"{why_slow}: keep the old model and re-embed in slices (`reembed`) instead"]}
    if "bridge" in ok and ("migrate" not in ok or ok["bridge"] >= ok["migrate"] - tolerance):
        vs = (f"within {tolerance} of migrate's {ret['migrate']:.3f}" if "migrate" in ok
              else "migrate falls below the status quo")
        return {"strategy": "bridge", "reasons": [
            f"the bridge keeps {ok['bridge']:.3f} of the top-10 (status quo {sq:.3f}), {vs}",
            f"it writes nothing and leaves the old index untouched; {why_slow}"]}
    vs = f", the bridge {ret['bridge']:.3f}" if ret["bridge"] is not None else ", no bridge measured"
    return {"strategy": "migrate", "reasons": [
        f"migrate keeps {ok['migrate']:.3f} of the top-10 (status quo {sq:.3f}{vs})",
        f"{why_slow}: migrate now, then `reembed` nightly slices towards the ceiling"]}
