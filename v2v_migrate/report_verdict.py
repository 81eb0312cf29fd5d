"""The report's verdict: every check, its threshold (`--threshold key=value` overrides any), and the reasons
in words.

The quality check is calibrated: a translation cannot know more than the old model does, so retention is
compared with THE STATUS QUO (old-model queries on old-model vectors, judged against the same new-model
truth), not with 1.0. `go` needs retention >= status quo - tolerance, where the tolerance is two standard
errors of the per-query difference measured in this very report (the spread of the comparison over its
queries), unless --threshold status_quo_tolerance=X fixes it.
"""
from __future__ import annotations

from v2v_migrate.errors import UsageError

DEFAULT_THRESHOLDS = {
    "status_quo_tolerance": None,  # None: 2 standard errors of (retention - status quo) over the queries
    "retention": 0.0,           # optional absolute floor of retention (checked only when set above 0)
    "known_item_top1": 0.50,    # min share of held-out texts whose new-model vector finds its own document first
    "top1": 0.50,               # min share of pairs whose own new-model vector is the nearest to the translation
    "mean_cosine": 0.50,        # min mean cos(F(x), y)
    "neighbour_overlap": 0.20,  # min mean top-10 overlap, source vs translated neighbourhoods (health)
    "target_proximity": 0.80,   # min (nearest-real-vector similarity of translations) / (same for real vectors)
    "collapse": 0.90,           # max mean pairwise cosine of translated vectors (1.0 = all the same)
    "non_finite": 0,            # max NaN/inf translated or stored rows
    "ann_recall": 0.90,         # min recall@10 of the destination's ANN index vs exact search
    "vector_tolerance": 1e-3,   # max per-row relative difference stored vs translator(source)
    "missing_rows": 0,          # max sampled source ids absent from the destination
    "mismatched_rows": 0,       # max sampled rows whose vector or payload differs
    "require_pairs": 1,         # 1: no pairs -> no-go (quality unmeasured); 0: health checks suffice
}
NO_PAIRS = ("only health checks ran: retrieval quality was not measured, so the verdict is no-go for lack of "
            "evidence. Fix: pass --encoder SPEC (the new model embeds held-out source texts) or --pairs FILE "
            "(or --threshold require_pairs=0 to accept health checks alone)")


def parse_thresholds(thresholds) -> dict:
    """Defaults overridden by a dict or by 'key=value' strings (as the CLI passes them)."""
    out = dict(DEFAULT_THRESHOLDS)
    if not thresholds:
        return out
    items = thresholds.items() if isinstance(thresholds, dict) else (_split_kv(s) for s in thresholds)
    for key, value in items:
        key = str(key).strip().replace("-", "_")
        if key not in DEFAULT_THRESHOLDS:
            raise UsageError(f"Unknown threshold {key!r}.", f"use one of {', '.join(DEFAULT_THRESHOLDS)}.")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"Threshold {key}={value!r} is not a number.", f"write it as {key}=0.9.") from None
    return out


def _split_kv(s: str):
    key, sep, value = str(s).partition("=")
    if not sep:
        raise UsageError(f"Threshold {s!r} is not of the form key=value.", "write it as retention=0.85.")
    return key, value


def _check(name, value, op, threshold, what, reason=None) -> dict:
    ok = value is not None and threshold is not None and (value >= threshold if op == ">=" else value <= threshold)
    return {"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(ok), "what": what,
            "reason": reason}


def tolerance(q: dict, th: dict) -> tuple[float, str]:
    """(tolerance, where it comes from) for the status-quo comparison."""
    if th.get("status_quo_tolerance") is not None:
        return float(th["status_quo_tolerance"]), "set by --threshold status_quo_tolerance"
    se = float(q.get("retention_minus_status_quo_se") or 0.0)
    return 2.0 * se, f"2 standard errors of the per-query difference over {q['queries']} queries"


def _quality_checks(q: dict, th: dict) -> list[dict]:
    tol, _ = tolerance(q, th)
    ret, sq = q["retention"], q["status_quo"]
    lost = (f"retention {ret:.3f} is below what the old model keeps, {sq:.3f} (tolerance {tol:.3f}): the "
            "translation lost neighbours" if ret is not None and sq is not None else "retention not measured")
    checks = [_check("retention_vs_status_quo", ret, ">=", None if sq is None else round(sq - tol, 6),
                     f"retrieval retention against the status quo ({_fmt(sq)}) minus the tolerance", lost)]
    if th["retention"] > 0:
        checks.append(_check("retention", ret, ">=", th["retention"], "retrieval retention, absolute floor"))
    ki = q.get("known_item") or {}
    checks.append(_check("known_item_top1", ki.get("top1"), ">=", th["known_item_top1"],
                         f"known-item search: a held-out text's new-model vector finds its own translated "
                         f"document first (among {q['pool']})",
                         f"known-item search finds its own document first for only {_pct(ki.get('top1'))} of "
                         "held-out texts: the translation is not aligned with the new model"))
    checks.append(_check("top1", q["top1"], ">=", th["top1"], f"top-1 among {q['pool']} candidates"))
    checks.append(_check("mean_cosine", q["mean_cosine"], ">=", th["mean_cosine"], "mean cosine to the true vector"))
    if checks[0]["threshold"] is None:
        checks[0]["passed"] = False
    return checks


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def verdict(report: dict, th: dict) -> dict:
    checks = []
    h, q, integ, ann = report["health"], report.get("quality"), report.get("integrity"), report.get("ann")
    checks.append(_check("non_finite", h["non_finite_rows"], "<=", th["non_finite"], "NaN/inf translated rows in the sample"))
    if h["neighbour_overlap"]["mean"] is not None:
        checks.append(_check("neighbour_overlap", h["neighbour_overlap"]["mean"], ">=", th["neighbour_overlap"],
                             "top-10 neighbourhood overlap, source vs translated"))
    near = h.get("nearest_target_similarity")
    if near and near.get("ratio") is not None:
        checks.append(_check("target_proximity", near["ratio"], ">=", th["target_proximity"],
                             "translations land as close to real new-model vectors as real ones do (ratio)"))
    checks.append(_check("collapse", h["mean_pairwise_cosine_translated"], "<=", th["collapse"],
                         "mean pairwise cosine of translated vectors"))
    if q:
        checks += _quality_checks(q, th)
    elif th["require_pairs"]:
        checks.append({"name": "require_pairs", "value": 0, "op": ">=", "threshold": 1, "passed": False,
                       "what": "held-out pairs to measure retrieval quality", "reason": NO_PAIRS})
    if integ:
        checks.append(_check("count_equal", 1 if integ["counts_equal"] else 0, ">=", 1,
                             f"destination count {integ['dest_count']} vs source {integ['source_count']}"))
        rows = integ["rows"]
        checks.append(_check("missing_rows", rows["missing"], "<=", th["missing_rows"], "sampled ids absent from the destination"))
        checks.append(_check("mismatched_rows", rows["vector_mismatches"] + rows["payload_mismatches"], "<=",
                             th["mismatched_rows"], "sampled rows whose stored vector or payload differs"))
        checks.append(_check("stored_non_finite", rows["non_finite"], "<=", th["non_finite"], "NaN/inf stored rows"))
    if ann and ann.get("measured"):
        checks.append(_check("ann_recall", ann["recall"], ">=", th["ann_recall"], "destination ANN recall@10 vs exact"))
    failed = [c for c in checks if not c["passed"]]
    reasons = [c.get("reason") or f"{c['name']} = {_fmt(c['value'])} (needs {c['op']} {_fmt(c['threshold'])}): "
               f"{c['what']}" for c in failed]
    if not failed:
        reasons = [_go_reason(q) if q else "every check passed"]
    notes = [f"schema: {d}" for d in ((integ or {}).get("schema") or {}).get("differences") or []]
    if ann is not None and not ann.get("measured"):
        notes.append(ann["reason"])
    return {"decision": "no-go" if failed else "go", "go": not failed, "reasons": reasons, "notes": notes,
            "checks": checks}


def _go_reason(q: dict) -> str:
    ki = q.get("known_item") or {}
    return (f"every check passed: retention {q['retention']:.3f} keeps at least what the old model keeps "
            f"({q['status_quo']:.3f}; re-embedding everything: 1.0), and known-item search finds "
            f"{_pct(ki.get('top1'))} of held-out texts first")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
