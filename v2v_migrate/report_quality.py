"""Retrieval quality on held-out pairs: where the pairs come from, and what the report measures on them.

Held-out pairs (never those train fitted on; see v2v_migrate.pairs' held-out rule), in this order:
  --pairs FILE   all rows, or only its held-out rows when train fitted on the same file (same sha256);
  --encoder      source rows of the held-out part with text, embedded by the new model;
  --target       ids the source and the target store both hold (held-out part when train recorded a rule).

Measured on n pairs (x old-model, y new-model vectors of the same texts, F the translator), with up to 1,000
queries q = the new-model vectors y_j (each query's own item excluded from the candidates):
  retention      |exact top-10 of y_j among y ∩ top-10 of y_j among F(x)| / 10   (re-embed ceiling: 1.0)
  status quo     |exact top-10 of y_j among y ∩ top-10 of x_j among x| / 10      (the old model searching itself)
  known item     rank of F(x_j) when y_j searches {F(x_i)}: top-1 share, mean rank
  top-1 / rank   rank of y_j when F(x_j) searches {y_i} (pool of up to 8,192, as in the vec2vec paper)
Per-query differences give the standard error that sets the verdict's tolerance (report_verdict).
"""
from __future__ import annotations

import numpy as np

from connectors.errors import ConnectorError
from translators.arrays import unit
from translators.metrics import overlap_at_k, paired_metrics, ranks, similarity, topk_rows
from v2v_migrate import report_metrics as rm
from v2v_migrate.errors import UsageError
from v2v_migrate.pairs import Pairs, encode_pairs, file_digest, read_pairs, shared_id_pairs, split_pairs

MAX_PAIRS = 8192          # candidate pool, as in the vec2vec paper
MAX_QUERIES = 1000        # retention queries
HELD_OUT_TEXTS = 1000     # texts the encoder embeds for the report (--held-out)
EXAMPLES = 5              # rows shown in the HTML page


def held_out_pairs(translator, source, target, sample, *, pairs_path=None, encoder=None, text_field=None,
                   n_encoded=HELD_OUT_TEXTS, seed=0, progress=False) -> tuple[Pairs | None, dict]:
    """(pairs never trained on, or None; how they were chosen)."""
    workflow = (getattr(translator, "config", None) or {}).get("workflow") or {}
    rule = workflow.get("holdout")
    info = {"rule": rule, "excluded_training_rows": False}
    if pairs_path:
        pairs = read_pairs(pairs_path, translator.source_dim, translator.target_dim)
        if workflow.get("pairs_file_sha256") == file_digest(pairs_path):
            pairs = split_pairs(pairs, True, rule)  # the file train fitted on: only its held-out rows
            info["excluded_training_rows"] = True
            if len(pairs) < 11:
                raise UsageError(f"the pairs file {pairs_path} trained this translator and holds only {len(pairs)} "
                                 "held-out rows.", "pass other pairs (--pairs) or --encoder to measure quality.")
        return pairs, info
    if encoder is not None:
        text_field = text_field or workflow.get("text_field")
        pairs, field = encode_pairs(source, encoder, n_encoded, want_held_out=True, seed=seed, text_field=text_field,
                                    rule=rule, progress=progress, expected_dim=translator.target_dim)
        info.update(excluded_training_rows=True, text_field=field, encoder=encoder.name)
        return pairs, info
    if target is not None:
        pairs = shared_id_pairs(source, target, sample, MAX_PAIRS)
        if rule:
            pairs = split_pairs(pairs, True, rule)
            info["excluded_training_rows"] = True
        return pairs, info
    return None, info


def quality(translator, pairs: Pairs, source_metric: str, metric: str, seed: int, source=None) -> dict:
    x, y = pairs.x, pairs.y
    pred = translator(x)
    n = len(x)
    paired = paired_metrics(pred, y, pool=MAX_PAIRS)
    r = ranks(pred, y, pool=MAX_PAIRS)
    known = ranks(y, pred, pool=MAX_PAIRS)  # the new model's query finds its own translated document
    cos = np.sum(unit(pred) * unit(y), axis=1)
    rng = np.random.default_rng(seed)
    qrows = np.sort(rng.choice(n, min(n, MAX_QUERIES), replace=False))
    curve = rm.recall_curve(y[qrows], qrows, y, pred, metric, max_k=100)
    kept = overlap_at_k(y[qrows], y, y[qrows], pred, 10, metric, metric, self_rows=qrows)
    old = overlap_at_k(y[qrows], y, x[qrows], x, 10, metric, source_metric, self_rows=qrows)
    diff = kept - old
    se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
    out = {
        "pairs": n, "queries": int(len(qrows)), "origin": pairs.origin, "metric": metric,
        **{k: paired[k] for k in ("mean_cosine", "top1", "mean_rank", "pool")},
        "recall_at_10": float(kept.mean()), "recall_at_10_true": 1.0,
        # exact search over the true vectors finds the ground truth by definition: the ceiling is 1.0
        "retention": float(kept.mean()), "status_quo": float(old.mean()), "reembed": 1.0,
        "retention_minus_status_quo_se": se,
        "known_item": {"top1": float(np.mean(known == 1)), "mean_rank": float(np.mean(known)),
                       "pool": int(min(n, MAX_PAIRS))},
        "recall_curve": {"k": list(range(1, len(curve) + 1)), "recall": [round(float(v), 6) for v in curve]},
        "cosine_hist": rm.histogram(cos, -0.2, 1.0, bins=48),
        "rank_cdf": rm.rank_cdf(r, 100),
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
