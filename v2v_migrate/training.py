"""train: sample both stores through the connectors, find pairs, fit a translator, save its directory.

Samples are uniform over each store (connectors sample by a seeded hash of the id, whatever the stream
order). Pairs come from `--pairs FILE` (Parquet, columns `source` and `target`, list<float>), from ids
present in both stores (the same ids are taken as the same texts), and from `--encoder` (source texts
embedded by the new model). Only the training part of each (v2v_migrate.pairs: held-out rule) is used.
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

from v2v_migrate.checkpoint import normalize_uri
from v2v_migrate.encoders import encoder_from, safe_spec
from v2v_migrate.errors import UsageError
from v2v_migrate.pairs import encode_pairs, file_digest, holdout_rule, pairs_by_id, read_pairs, split_pairs
from v2v_migrate.stores import open_existing

DEFAULT_SAMPLE_SIZE = 50_000
# Source texts the new model's encoder embeds for training (--encoder). docs/pairs_budget.md: with 4,000 pairs
# ridge reaches 0.971-0.999 of its own top-1 on 10,000 pairs on every pair measured (minilm->e5 0.971 / 0.975 on
# two seeds, the hardest; 3,000 gave 0.959 / 0.964), and retention beats the status quo by +0.05 to +0.17;
# beyond it retention gains about 0.01 per 1,000 more pairs, and encoding costs 17-100 s per 1,000 texts here.
DEFAULT_ENCODED_PAIRS = 4_000
# Fewer id-overlap pairs than this are noise, not supervision: they are ignored.
MIN_ID_PAIRS = 32
# From this many pairs on, supervised ridge beats `auto` anchored by the same pairs. Retrieval retention
# (recall@10, the report's measure; benchmarks/results/fidelity.txt, S4-2 and S4-7) on mpnet->minilm /
# l3->minilm / minilm->e5: with 3,000 pairs ridge 0.494 / 0.348 / 0.246 against auto 0.482 / 0.336 / 0.235;
# with 1,000 pairs auto 0.461 / 0.326 / 0.214 against ridge 0.436 / 0.288 / 0.195 (Procrustes 0.449 / 0.309 /
# 0.210). With 2,000 (S5-5) auto still kept more on mpnet->minilm (0.476 / 0.450) and ridge slightly more on
# l3->minilm (0.335 / 0.331) and minilm->e5 (0.234 / 0.225): the crossover lies near 2,000 on two of three.
SUPERVISED_PAIRS = 3_000
# The CLI's default method: pick one from the known pairs (choose_method); every other name is a
# translators method (`auto` is the unsupervised one).
CHOOSE = "choose"
# Which way the map goes. new-to-old is the query bridge: new-model queries translated into the old space
# search the old index untouched (zero writes). Same pairs, same held-out rule, roles swapped.
OLD_TO_NEW, NEW_TO_OLD = "old-to-new", "new-to-old"
DIRECTIONS = (OLD_TO_NEW, NEW_TO_OLD)


def choose_method(n_pairs: int) -> tuple[str, str]:
    """(method, reason) from the number of known pairs."""
    if n_pairs >= SUPERVISED_PAIRS:
        return "ridge", f"{n_pairs} known pairs: a supervised linear map is the most faithful."
    if n_pairs:
        return "auto", (f"{n_pairs} known pairs (under {SUPERVISED_PAIRS:,}): unsupervised fit anchored by them, "
                        "which kept more of the retrieval than a supervised map on so few pairs.")
    return "auto", ("no known pairs: unsupervised fit on samples of both stores. Measured unreliable across "
                    "model families (docs/results.md): pass --encoder SPEC (the new model embeds a few "
                    "thousand source texts) or --pairs FILE: pairs fix the fit and make the report trustworthy.")


# Label-free alarm for an unsupervised map. Over the runs in benchmarks/results/fidelity.txt, maps that failed
# (top-1 ~0: every pair with e5) scored neighbour consistency 0.055-0.091; working ones (top-1 0.84-0.98)
# 0.14-0.20, and the demo's 0.149, all on held-out samples of 1,962-3,000 rows per side. The figure rises on
# small samples (a failed minilm->e5 map scored 0.137 on 500 rows), so below HEALTH_MIN_ROWS there is no verdict.
# A heuristic from our data, not a proof either way.
FAILED_MAP_CONSISTENCY = 0.10
HEALTH_MIN_ROWS = 1800


def health_summary(metrics: dict) -> tuple[str | None, str | None]:
    """(one line of the translator's label-free health, a warning when it looks like a failed map) or Nones."""
    health = metrics.get("health") if isinstance(metrics, dict) else None
    if not isinstance(health, dict) or "neighbour_consistency" not in health:
        return None, None
    nc = float(health["neighbour_consistency"])
    line = (f"health  neighbour consistency {nc:.3f}, mutual-NN cosine {float(health.get('mnn_mean_cosine', 0)):.3f}"
            f" (label-free; failed maps scored 0.055-0.091 in our benchmarks, working ones 0.14-0.20)")
    sample = health.get("sample") or {}
    rows = min(sample.get("source", 0), sample.get("target", 0))
    warning = None
    if rows < HEALTH_MIN_ROWS:
        line += f"; {rows} held-out rows per side are too few to call a map failed (>= {HEALTH_MIN_ROWS} needed)"
    elif nc < FAILED_MAP_CONSISTENCY:
        warning = (f"the translator looks unaligned (neighbour consistency {nc:.3f} < {FAILED_MAP_CONSISTENCY}): "
                   "unsupervised training fails on some model pairs. Pass --encoder SPEC (the new model embeds "
                   "source texts as pairs) or --pairs FILE, and check it with `v2v-migrate report` before applying.")
    return line, warning


def _sources_of_pairs(source, target, src, pairs_path, encoder, encoded, seed, text_field, progress):
    """Training pairs from every source given (a file, ids in both stores, the encoder): training part only."""
    pairs, origins, extra = None, [], {}
    if pairs_path:
        pairs = split_pairs(read_pairs(pairs_path, source.dim, target.dim if target else None), False)
        origins.append(f"file {Path(pairs_path).name}")
        extra["pairs_file_sha256"] = file_digest(pairs_path)
    if target is not None:
        by_id = split_pairs(pairs_by_id(src, target), False)
        if len(by_id) >= MIN_ID_PAIRS:  # a handful of shared ids is noise, not supervision
            pairs = by_id if pairs is None else pairs.concat(by_id)
            origins.append("ids in both stores")
    if encoder is not None:
        got, field = encode_pairs(source, encoder, encoded, want_held_out=False, seed=seed, text_field=text_field,
                                   progress=progress, expected_dim=target.dim if target else None)
        pairs = got if pairs is None else pairs.concat(got)
        origins.append(f"encoder ({len(got):,} texts of field {field!r})")
        extra["text_field"] = field
    return pairs, " + ".join(origins) or "none", extra


def train_translator(source_uri: str, target_uri: str | None, out_dir: str | os.PathLike, *, method: str = "choose",
                     pairs_path: str | os.PathLike | None = None, sample_size: int | None = None, seed: int = 0,
                     device: str = "auto", progress: bool = False, source_options: dict | None = None,
                     target_options: dict | None = None, encoder: str | None = None, text_field: str | None = None,
                     encoder_prefix: str = "", encoded_pairs: int | None = None, direction: str = OLD_TO_NEW) -> dict:
    """Fit and save a translator; returns a summary (method, samples, pairs, metrics, fingerprint, out).

    direction `new-to-old` fits the query bridge (new-model vectors -> old ones) from the same pairs and
    samples, roles swapped; the directory records it (config.json workflow.direction).

    Pairs come from `pairs_path`, from ids in both stores, and from `encoder` (a spec: `encoded_pairs`
    source texts embedded by the new model). Without a target store the new model's side of the pairs is
    the target sample. Rows of the held-out part (pairs.held_out) are never trained on.
    """
    import translators

    t0 = time.monotonic()
    if sample_size is not None and sample_size < 1:
        raise UsageError(f"--sample-size must be positive, got {sample_size}.", "pass e.g. --sample-size 20000.")
    if method != CHOOSE and method not in translators.METHODS:
        raise UsageError(f"Unknown method {method!r}.",
                         f"use {CHOOSE} (the default: picked from the known pairs) or one of "
                         f"{', '.join(translators.METHODS)}.")
    if direction not in DIRECTIONS:
        raise UsageError(f"Unknown direction {direction!r}.", f"pass --direction {OLD_TO_NEW} (the default: "
                         f"translate stored vectors) or {NEW_TO_OLD} (a query bridge).")
    if not (target_uri or pairs_path or encoder):
        raise UsageError("train needs the new model's side: --target, --pairs or --encoder.",
                         "pass --encoder SPEC (the new model embeds source texts), --pairs FILE or --target URI.")
    budget = int(encoded_pairs or DEFAULT_ENCODED_PAIRS)
    if budget < 2:
        raise UsageError(f"--encoded-pairs must be at least 2, got {budget}.", "pass e.g. --encoded-pairs 4000.")
    with ExitStack() as stack:
        source = open_existing(source_uri, "source", source_options)
        stack.callback(source.close)
        target = None
        if target_uri:
            target = open_existing(target_uri, "target", target_options)
            stack.callback(target.close)
        enc = stack.enter_context(encoder_from(encoder, encoder_prefix))
        n = sample_size or DEFAULT_SAMPLE_SIZE
        src = source.sample(min(n, source.count()), seed=seed)
        tgt = target.sample(min(n, target.count()), seed=seed) if target is not None else None
        pairs, pairs_from, extra = _sources_of_pairs(source, target, src, pairs_path, enc, budget, seed,
                                                     text_field, progress)
        n_pairs = 0 if pairs is None else len(pairs)
        if tgt is None and n_pairs < 2:
            raise UsageError(f"only {n_pairs} training pair(s) were found and no --target store was given.",
                             "give more pairs (--pairs FILE, or source rows with text for --encoder) or --target.")
        reason = f"method {method!r} asked for"
        if method == CHOOSE:
            method, reason = choose_method(n_pairs)
            if method == "auto" and tgt is None and n_pairs < translators.MIN_UNSUPERVISED:
                # auto needs that many new-model vectors; without a target store the pairs are all there is
                method, reason = "ridge", (f"{n_pairs} known pairs and no --target store: too few new-model "
                                           f"vectors for auto (>= {translators.MIN_UNSUPERVISED}), so ridge.")
        # Without a target store, the new model's side of the pairs is the target sample.
        tgt_vectors = tgt.vectors if tgt is not None else pairs.y
        fit_x, fit_y = src.vectors, tgt_vectors
        fit_pairs = None if pairs is None else (pairs.x, pairs.y)
        if direction == NEW_TO_OLD:  # the bridge: new-model vectors in, old-model vectors out
            fit_x, fit_y = fit_y, fit_x
            fit_pairs = None if pairs is None else (pairs.y, pairs.x)
        translator = translators.fit(fit_x, fit_y, method=method, pairs=fit_pairs, seed=seed,
                                     device=device, progress=progress)
        # Provenance (URIs without secrets). Part of the fingerprint, so apply's checkpoints tell
        # translators trained on different data apart; `holdout` tells report which rows it may use.
        translator.config["workflow"] = {
            "source_uri": normalize_uri(source_uri), "target_uri": normalize_uri(target_uri) if target_uri else None,
            "source_count": int(source.count()), "target_count": int(target.count()) if target is not None else 0,
            "source_sample": len(src), "target_sample": len(tgt_vectors), "pairs": n_pairs, "pairs_from": pairs_from,
            "seed": int(seed), "method_reason": reason, "holdout": holdout_rule(),
            "encoder": safe_spec(encoder), "encoder_prefix": encoder_prefix or "", "direction": direction, **extra,
        }
        translator.save(out_dir)
        health_line, health_warning = health_summary(translator.metrics)
        return {"out": str(Path(out_dir).resolve()), "method": method, "method_reason": reason, "direction": direction,
                "source_sample": len(src), "target_sample": len(tgt_vectors), "pairs": n_pairs,
                "pairs_from": pairs_from, "source_dim": translator.source_dim, "target_dim": translator.target_dim,
                "fingerprint": translator.fingerprint, "metrics": dict(translator.metrics),
                "health_line": health_line, "health_warning": health_warning,
                "seconds": round(time.monotonic() - t0, 2)}
