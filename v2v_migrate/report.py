"""`v2v-migrate report`: does retrieval still work after (or before) moving to the new model?

Two moments:
- dry run (no `dest_uri`): translate a seeded sample of the source and measure it. Nothing is written to
  any store; stores are only opened and read.
- after apply (`dest_uri`): the same figures plus integrity of the destination (counts, sampled rows,
  payloads, vectors == translator(source vector)) and the recall of its own ANN index.

Quality needs pairs (vectors of the same texts under both models): a Parquet file (`pairs_path`, columns
`source`, `target`) or ids present in both the source and the `target_uri` store. Without pairs only
unsupervised health figures are computed, and the verdict is no-go unless the user sets require_pairs=0.

Retrieval retention (the headline figure; see README "Reading the report"):
  Pairs (x_i, y_i), i = 1..n (n <= 8,192), x old-model, y new-model vectors of the same text, F the
  translator. Queries: the true new-model vectors y_j of up to 1,000 pair items (seeded). For query j the
  candidates are the other n-1 items. Ground truth: the exact top-10 of y_j among {y_i, i != j}. Measured:
  the top-10 of y_j among {F(x_i), i != j}. recall@10 = mean |truth ∩ measured| / 10, and
  retention = recall@10 of the translated documents ÷ recall@10 of the true documents through the same
  search. Both sides use exact search here, so the denominator is 1.0; the destination's ANN loss is
  reported separately (ann.recall), and end-to-end recall is about retention × ann.recall.
  Retention falls as n grows (finer neighbourhoods): compare figures measured with similar n.
"""
from __future__ import annotations

import datetime as _dt
import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from connectors.errors import ConnectorError, DimensionMismatchError
from connectors.secrets import clean_uri
from translators import load_translator
from translators.arrays import unit
from translators.metrics import similarity, topk_rows
from v2v_migrate import report_integrity as ri
from v2v_migrate import report_metrics as rm
from v2v_migrate.errors import UsageError
from v2v_migrate.pairs import Pairs, read_pairs, shared_id_pairs
from v2v_migrate.stores import open_existing

MAX_PAIRS = 8192      # candidate pool, as in the vec2vec paper
MAX_QUERIES = 1000    # retention queries
ANN_QUERIES = 200     # queries for the destination's ANN recall
EXAMPLES = 5          # rows shown in the HTML page

# Every threshold the verdict uses; `--threshold key=value` overrides any of them.
DEFAULT_THRESHOLDS = {
    "retention": 0.90,          # min retrieval retention (recall@10 translated / true)
    "top1": 0.50,               # min share of pairs whose own new-model vector is the nearest
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


def _role_options(store_options) -> dict:
    """Options per store: {'source': {...}, 'target': {...}, 'dest': {...}}, or one dict used for all three."""
    o = dict(store_options or {})
    roles = ("source", "target", "dest")
    if o and set(o) <= set(roles):
        return {r: dict(o.get(r) or {}) for r in roles}
    return {r: dict(o) for r in roles}


# ---- measurements ----------------------------------------------------------------------------------------
def _health(translator, sample, translated, source_metric, target_sample, metric) -> dict:
    overlap = rm.neighbour_overlap(sample.vectors, source_metric, translated, metric)
    out = {
        "translator_health": (translator.metrics or {}).get("health"),
        "sample_size": len(sample),
        "non_finite_rows": rm.non_finite_rows(translated),
        "source_norms": rm.norm_stats(sample.vectors),
        "translated_norms": rm.norm_stats(translated),
        "neighbour_overlap": {"k": 10, "mean": float(overlap.mean()) if len(overlap) else None,
                              "hist": rm.histogram(overlap, 0.0, 1.0, bins=11)},
        "mean_pairwise_cosine_translated": rm.mean_pairwise_cosine(translated),
    }
    if target_sample is not None and len(target_sample) >= 4:
        # Do translations land where real new-model vectors live? Compare their nearest real neighbour with
        # what real vectors get among the other half of the target sample.
        t = target_sample.vectors
        half = len(t) // 2
        out["target_norms"] = rm.norm_stats(t)
        out["mean_pairwise_cosine_target"] = rm.mean_pairwise_cosine(t)
        ref = rm.nearest_similarity(t[:half], t[half:], metric)
        got = rm.nearest_similarity(translated[:2000], t[half:], metric)
        out["nearest_target_similarity"] = {"translated": float(got.mean()), "real": float(ref.mean()),
                                            "ratio": float(got.mean() / ref.mean()) if ref.mean() else None}
    return out


def _quality(translator, pairs: Pairs, source_metric: str, metric: str, seed: int, source=None) -> dict:
    from translators.metrics import paired_metrics, ranks

    x, y = pairs.x, pairs.y
    pred = translator(x)
    n = len(x)
    paired = paired_metrics(pred, y, pool=MAX_PAIRS)
    r = ranks(pred, y, pool=MAX_PAIRS)
    cos = np.sum(unit(pred) * unit(y), axis=1)
    rng = np.random.default_rng(seed)
    qrows = np.sort(rng.choice(n, min(n, MAX_QUERIES), replace=False))
    curve = rm.recall_curve(y[qrows], qrows, y, pred, metric, max_k=100)
    r10 = float(curve[9]) if len(curve) >= 10 else None
    exact_true = 1.0  # exact search over the true vectors finds the ground truth by definition
    out = {
        "pairs": n, "queries": int(len(qrows)), "origin": pairs.origin, "metric": metric,
        **{k: paired[k] for k in ("mean_cosine", "top1", "mean_rank", "pool")},
        "recall_at_10": r10, "recall_at_10_true": exact_true,
        "retention": None if r10 is None else r10 / exact_true,
        "recall_curve": {"k": list(range(1, len(curve) + 1)), "recall": [round(float(v), 6) for v in curve]},
        "cosine_hist": rm.histogram(cos, -0.2, 1.0, bins=48),
        "rank_cdf": rm.rank_cdf(r, 100),
        # What a perfect translator would give for the source-vs-translated overlap (the models differ).
        "neighbour_overlap_source_vs_true": float(rm.neighbour_overlap(x, source_metric, y, metric).mean()),
        "neighbour_overlap_translated_vs_true": float(rm.neighbour_overlap(pred, metric, y, metric).mean()),
    }
    if n < 11:
        out["note"] = f"only {n} pairs: recall@10 needs at least 11."
    out["examples"] = _examples(pairs, pred, qrows, metric, source)
    return out


def _label(payload, fallback) -> str:
    if payload:
        text = next((payload[k] for k in ("text", "title", "name") if payload.get(k) is not None), None)
        return str(text if text is not None else payload)[:300]
    return f"id {fallback}"


def _examples(pairs, pred, qrows, metric, source=None) -> list[dict]:
    """A few queries with their top-3 among true vs translated documents, labelled by payload text (escaped in
    the HTML). Pairs from a file carry no payloads: they are looked up in the source by id when it has them."""
    picks = []
    for j in qrows[:EXAMPLES]:
        st = similarity(pairs.y[j:j + 1], pairs.y, metric)[0]
        sp = similarity(pairs.y[j:j + 1], pred, metric)[0]
        st[j] = sp[j] = -np.inf
        picks.append((int(j), topk_rows(st[None], 3)[0].tolist(), topk_rows(sp[None], 3)[0].tolist()))
    needed = sorted({i for j, a, b in picks for i in [j, *a, *b]})
    ids = pairs.ids if pairs.ids is not None else list(range(len(pairs)))
    if pairs.payloads:
        pay = {i: pairs.payloads[i] for i in needed}
    elif source is not None and pairs.ids is not None:
        try:
            got = source.get([ids[i] for i in needed])
            by_id = dict(zip(got.ids, got.payloads or [None] * len(got.ids)))
        except ConnectorError:
            by_id = {}
        pay = {i: by_id.get(ids[i]) for i in needed}
    else:
        pay = {}
    return [{"query": _label(pay.get(j), ids[j]), "true_top3": [_label(pay.get(i), ids[i]) for i in a],
             "translated_top3": [_label(pay.get(i), ids[i]) for i in b]} for j, a, b in picks]


# ---- verdict ------------------------------------------------------------------------------------------------
def _check(name, value, op, threshold, what) -> dict:
    ok = value is not None and (value >= threshold if op == ">=" else value <= threshold)
    return {"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(ok), "what": what}


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
        checks.append(_check("retention", q["retention"], ">=", th["retention"], "retrieval retention (recall@10 ratio)"))
        checks.append(_check("top1", q["top1"], ">=", th["top1"], f"top-1 among {q['pool']} candidates"))
        checks.append(_check("mean_cosine", q["mean_cosine"], ">=", th["mean_cosine"], "mean cosine to the true vector"))
    elif th["require_pairs"]:
        checks.append({"name": "require_pairs", "value": 0, "op": ">=", "threshold": 1, "passed": False,
                       "what": "retrieval quality not measured: pass --pairs FILE or a --target store sharing ids "
                               "with the source (or set --threshold require_pairs=0)"})
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
    reasons = [f"{c['name']} = {_fmt(c['value'])} (needs {c['op']} {_fmt(c['threshold'])}): {c['what']}" for c in failed]
    if not failed:
        reasons = ["every check passed"]
    notes = [f"schema: {d}" for d in ((integ or {}).get("schema") or {}).get("differences") or []]
    if ann is not None and not ann.get("measured"):
        notes.append(ann["reason"])
    return {"decision": "no-go" if failed else "go", "go": not failed, "reasons": reasons, "notes": notes,
            "checks": checks}


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- entry point ----------------------------------------------------------------------------------------
def build_report(*, translator_dir, source_uri, out_dir, dest_uri=None, target_uri=None, pairs_path=None,
                 sample_size=2000, thresholds=None, json_only=False, store_options=None, seed=0) -> dict:
    """Measure, decide, write `report.json` (+ `report.html`) into out_dir; return the report dict."""
    th = parse_thresholds(thresholds)
    if int(sample_size) < 2:
        raise UsageError(f"sample_size {sample_size} is too small.", "use at least 100 (default 2000).")
    with ExitStack() as stack:
        return _build(stack, translator_dir, source_uri, out_dir, dest_uri, target_uri, pairs_path, sample_size,
                      th, json_only, _role_options(store_options), seed)


def _open(stack: ExitStack, uri: str | None, options: dict, role: str, prefer_vector: str | None = None):
    if not uri:
        return None
    store = open_existing(uri, role, options, allow_empty=True, prefer_vector=prefer_vector)
    stack.callback(store.close)
    return store


def _build(stack, translator_dir, source_uri, out_dir, dest_uri, target_uri, pairs_path, sample_size, th,
           json_only, opts, seed) -> dict:
    if callable(translator_dir) and not isinstance(translator_dir, (str, Path)):
        translator = translator_dir  # an in-memory Translator (library use)
    else:
        translator = load_translator(translator_dir)
    source = _open(stack, source_uri, opts["source"], "source")
    if source.dim != translator.source_dim:
        raise DimensionMismatchError(f"source vectors have dimension {source.dim} but the translator expects "
                                     f"{translator.source_dim}.", "pass the translator trained for this source.")
    target = _open(stack, target_uri, opts["target"], "target")
    # a destination holding several vectors (carried from the source) migrated the source's one
    dest = _open(stack, dest_uri, opts["dest"], "destination",
                 source.describe_schema().get("vector") if dest_uri else None)
    metric = dest.metric if dest else (target.metric if target else "cosine")

    sample = source.sample(int(sample_size), seed=seed)
    translated = translator(sample.vectors)
    target_sample = target.sample(min(int(sample_size), 4000), seed=seed) if target else None
    report = {
        "kind": "after-apply" if dest else "dry-run",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "translator": {"dir": str(translator_dir) if isinstance(translator_dir, (str, Path)) else None,
                       "method": getattr(translator, "method", None),
                       "fingerprint": getattr(translator, "fingerprint", None),
                       "source_dim": translator.source_dim, "target_dim": translator.target_dim,
                       "train_metrics": translator.metrics},
        "source": {"uri": clean_uri(source_uri), "count": source.count(), "dim": source.dim, "metric": source.metric},
        "target": {"uri": clean_uri(target_uri), "count": target.count(), "metric": target.metric} if target else None,
        "dest": {"uri": clean_uri(dest_uri), "count": dest.count(), "metric": dest.metric} if dest else None,
        "metric": metric,
        "sample_rows": [{"id": ri._jsonable_id(sample.ids[i]),
                         "payload": sample.payloads[i] if sample.payloads else None} for i in range(min(EXAMPLES, len(sample)))],
        "health": _health(translator, sample, translated, source.metric, target_sample, metric),
    }
    pairs = None
    if pairs_path:
        pairs = read_pairs(pairs_path, translator.source_dim, translator.target_dim)
    elif target is not None:
        pairs = shared_id_pairs(source, target, sample, MAX_PAIRS)
    report["pairs"] = {"origin": pairs.origin if pairs is not None and len(pairs) else None,
                       "n": len(pairs) if pairs is not None else 0}
    report["quality"] = _quality(translator, pairs, source.metric, metric, seed, source) if report["pairs"]["n"] >= 2 else None
    if dest is not None:
        report["integrity"] = {"source_count": report["source"]["count"], "dest_count": report["dest"]["count"],
                               "counts_equal": report["source"]["count"] == report["dest"]["count"],
                               "rows": ri.check_rows(sample, dest, translator, th["vector_tolerance"]),
                               "schema": ri.compare_schemas(source, dest)}
        queries = pairs.y[:ANN_QUERIES] if report["quality"] else translated[:ANN_QUERIES]
        report["ann"] = ri.ann_recall(dest, queries, k=10)
        report["ann"]["queries_from"] = "pair new-model vectors" if report["quality"] else "translated sample rows"
    else:
        report["integrity"] = report["ann"] = None
    report["thresholds"] = th
    report["verdict"] = verdict(report, th)
    return write_report(report, out_dir, json_only=json_only)


def write_report(report: dict, out_dir, json_only: bool = False) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = {"json": str((out / "report.json").resolve())}
    if not json_only:
        from v2v_migrate.report_html import render_html

        report["files"]["html"] = str((out / "report.html").resolve())
        (out / "report.html").write_text(render_html(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(_clean(report), indent=2, default=str), encoding="utf-8")
    return report


def _clean(obj):
    """JSON has no NaN/inf nor numpy types."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
