"""`v2v-migrate report`: does retrieval still work after (or before) moving to the new model?

Two moments:
- dry run (no `dest_uri`): translate a seeded sample of the source and measure it. Nothing is written to
  any store; stores are only opened and read.
- after apply (`dest_uri`): the same figures plus integrity of the destination (counts, sampled rows,
  payloads, vectors == translator(source vector)) and the recall of its own ANN index.

Quality needs held-out pairs (vectors of the same texts under both models, never those train fitted on):
a Parquet file (`pairs_path`), the new model's encoder (`encoder`: held-out source texts embedded), or ids
present in both the source and the `target_uri` store; report_quality says how each is chosen and what is
measured (retention, the status quo, known-item search). report_verdict decides. Without pairs only health
figures are computed, and the verdict is no-go for lack of evidence unless the user sets require_pairs=0.
Retention falls as n grows (finer neighbourhoods): compare figures measured with similar n.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from connectors.errors import DimensionMismatchError
from connectors.secrets import clean_uri
from translators import load_translator
from v2v_migrate import report_integrity as ri
from v2v_migrate import report_metrics as rm
from v2v_migrate import strategies_report as sr
from v2v_migrate.encoders import encoder_from
from v2v_migrate.errors import UsageError
from v2v_migrate.report_quality import EXAMPLES, HELD_OUT_TEXTS, held_out_pairs, quality
from v2v_migrate.report_verdict import DEFAULT_THRESHOLDS, parse_thresholds, verdict  # noqa: F401 (API)
from v2v_migrate.stores import open_existing

ANN_QUERIES = 200     # held-out queries for the destination's ANN recall


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


# ---- entry point ----------------------------------------------------------------------------------------
def build_report(*, translator_dir, source_uri, out_dir, dest_uri=None, target_uri=None, pairs_path=None,
                 sample_size=2000, thresholds=None, json_only=False, store_options=None, seed=0, encoder=None,
                 text_field=None, encoder_prefix="", held_out=HELD_OUT_TEXTS, progress=False, bridge_dir=None) -> dict:
    """Measure, decide, write `report.json` (+ `report.html`) into out_dir; return the report dict.

    encoder: a spec (or an open Encoder) of the new model; `held_out` source texts it embeds as pairs.
    bridge_dir: a query bridge (train --direction new-to-old), measured in the strategy comparison."""
    th = parse_thresholds(thresholds)
    if int(sample_size) < 2:
        raise UsageError(f"sample_size {sample_size} is too small.", "use at least 100 (default 2000).")
    if int(held_out) < 11:
        raise UsageError(f"--held-out {held_out} is too few for recall@10.", "pass --held-out 100 or more.")
    with ExitStack() as stack:
        encoder = stack.enter_context(encoder_from(encoder, encoder_prefix))
        opts = dict(encoder=encoder, text_field=text_field, n_encoded=int(held_out), seed=seed, progress=progress)
        return _build(stack, translator_dir, source_uri, out_dir, dest_uri, target_uri, pairs_path, sample_size,
                      th, json_only, _role_options(store_options), opts, bridge_dir)


def _open(stack: ExitStack, uri: str | None, options: dict, role: str, prefer_vector: str | None = None):
    if not uri:
        return None
    store = open_existing(uri, role, options, allow_empty=True, prefer_vector=prefer_vector)
    stack.callback(store.close)
    return store


def _build(stack, translator_dir, source_uri, out_dir, dest_uri, target_uri, pairs_path, sample_size, th,
           json_only, opts, pair_opts, bridge_dir=None) -> dict:
    seed = pair_opts["seed"]
    if callable(translator_dir) and not isinstance(translator_dir, (str, Path)):
        translator = translator_dir  # an in-memory Translator (library use)
    else:
        translator = load_translator(translator_dir)
    sr.refuse_bridge_as_translator(translator, "report")
    bridge = load_translator(bridge_dir) if bridge_dir else None
    if bridge is not None:
        sr.check_bridge(bridge, translator)
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
    # Pairs first: an encoder that fails (HTTP errors, wrong dimension, no text) stops here, before any file.
    t_pairs = time.perf_counter()
    pairs, chosen = held_out_pairs(translator, source, target, sample, pairs_path=pairs_path, **pair_opts)
    # texts/s of the new model (reading the held-out rows included: a slight underestimate)
    encode_rate = (len(pairs) / max(time.perf_counter() - t_pairs, 1e-9)
                   if pair_opts.get("encoder") is not None and pairs is not None and len(pairs) else None)
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
    n_pairs = len(pairs) if pairs is not None else 0
    report["pairs"] = {"origin": pairs.origin if n_pairs else None, "n": n_pairs, **chosen}
    report["quality"] = quality(translator, pairs, source.metric, metric, seed, source) if n_pairs >= 2 else None
    report["strategies"] = (sr.section(translator, bridge, pairs, sample, source, report["quality"], metric=metric,
                                       seed=seed, encode_rate=encode_rate, text_field=chosen.get("text_field") or
                                       pair_opts.get("text_field")) if n_pairs >= 11 else None)
    if dest is not None:
        report["integrity"] = {"source_count": report["source"]["count"], "dest_count": report["dest"]["count"],
                               "counts_equal": report["source"]["count"] == report["dest"]["count"],
                               "rows": ri.check_rows(sample, dest, translator, th["vector_tolerance"]),
                               "schema": ri.compare_schemas(source, dest)}
        queries = pairs.y[:ANN_QUERIES] if report["quality"] else translated[:ANN_QUERIES]
        report["ann"] = ri.ann_recall(dest, queries, k=10)
        report["ann"]["queries_from"] = ("held-out new-model vectors" if report["quality"]
                                         else "translated sample rows")
        from v2v_migrate.report_reembed import reembed_share

        report["reembedded"] = reembed_share(dest, sample.ids)
    else:
        report["integrity"] = report["ann"] = report["reembedded"] = None
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
        extra = sr.html(report["strategies"]) if report.get("strategies") else ""
        (out / "report.html").write_text(render_html(report, extra), encoding="utf-8")
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
