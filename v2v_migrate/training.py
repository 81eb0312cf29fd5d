"""train: sample both stores through the connectors, find pairs, fit a translator, save its directory.

Samples are uniform over each store (connectors sample by a seeded hash of the id, whatever the stream
order). Pairs come from `--pairs FILE` (Parquet, columns `source` and `target`, list<float>) or, when none
is given, from ids present in both stores (the same ids are taken as the same texts).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from v2v_migrate.checkpoint import normalize_uri
from v2v_migrate.errors import UsageError
from v2v_migrate.pairs import pairs_by_id, read_pairs
from v2v_migrate.stores import open_existing

DEFAULT_SAMPLE_SIZE = 50_000
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


def choose_method(n_pairs: int) -> tuple[str, str]:
    """(method, reason) from the number of known pairs."""
    if n_pairs >= SUPERVISED_PAIRS:
        return "ridge", f"{n_pairs} known pairs: a supervised linear map is the most faithful."
    if n_pairs:
        return "auto", (f"{n_pairs} known pairs (under {SUPERVISED_PAIRS:,}): unsupervised fit anchored by them, "
                        "which kept more of the retrieval than a supervised map on so few pairs.")
    return "auto", ("no known pairs: unsupervised fit on samples of both stores. Measured unreliable across "
                    "model families (README, Honest status): re-embed ~1,000 source texts with the new model "
                    "and pass them as --pairs: they anchor the fit and make the report trustworthy.")


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
                   "unsupervised training fails on some model pairs. Give ~1,000 known pairs (--pairs, or ids "
                   "present in both stores) and check it with `v2v-migrate report` before applying.")
    return line, warning


def train_translator(source_uri: str, target_uri: str, out_dir: str | os.PathLike, *, method: str = "choose",
                     pairs_path: str | os.PathLike | None = None, sample_size: int | None = None, seed: int = 0,
                     device: str = "auto", progress: bool = False, source_options: dict | None = None,
                     target_options: dict | None = None) -> dict:
    """Fit and save a translator; returns a summary (method, samples, pairs, metrics, fingerprint, out)."""
    import translators

    t0 = time.monotonic()
    if sample_size is not None and sample_size < 1:
        raise UsageError(f"--sample-size must be positive, got {sample_size}.", "pass e.g. --sample-size 20000.")
    if method != CHOOSE and method not in translators.METHODS:
        raise UsageError(f"Unknown method {method!r}.",
                         f"use {CHOOSE} (the default: picked from the known pairs) or one of "
                         f"{', '.join(translators.METHODS)}.")
    source = open_existing(source_uri, "source", source_options)
    target = open_existing(target_uri, "target", target_options)
    try:
        n = sample_size or DEFAULT_SAMPLE_SIZE
        src = source.sample(min(n, source.count()), seed=seed)
        tgt = target.sample(min(n, target.count()), seed=seed)
        pairs = None
        if pairs_path:
            known = read_pairs(pairs_path, source.dim, target.dim)
            pairs_from = f"file {Path(pairs_path).name}"
        else:
            known = pairs_by_id(src, target)
            if len(known) < MIN_ID_PAIRS:
                known = None  # a handful of shared ids is noise, not supervision
            pairs_from = "ids in both stores" if known is not None else "none"
        if known is not None:
            pairs = (known.x, known.y)
        n_pairs = 0 if pairs is None else len(pairs[0])
        reason = f"method {method!r} asked for"
        if method == CHOOSE:
            method, reason = choose_method(n_pairs)
        translator = translators.fit(src.vectors, tgt.vectors, method=method, pairs=pairs, seed=seed,
                                     device=device, progress=progress)
        # Provenance (URIs without secrets). Part of the fingerprint, so apply's checkpoints tell
        # translators trained on different data apart.
        translator.config["workflow"] = {
            "source_uri": normalize_uri(source_uri), "target_uri": normalize_uri(target_uri),
            "source_count": int(source.count()), "target_count": int(target.count()),
            "source_sample": len(src), "target_sample": len(tgt), "pairs": n_pairs, "pairs_from": pairs_from,
            "seed": int(seed), "method_reason": reason,
        }
        translator.save(out_dir)
        health_line, health_warning = health_summary(translator.metrics)
        return {"out": str(Path(out_dir).resolve()), "method": method, "method_reason": reason,
                "source_sample": len(src), "target_sample": len(tgt), "pairs": n_pairs, "pairs_from": pairs_from,
                "source_dim": translator.source_dim, "target_dim": translator.target_dim,
                "fingerprint": translator.fingerprint, "metrics": dict(translator.metrics),
                "health_line": health_line, "health_warning": health_warning,
                "seconds": round(time.monotonic() - t0, 2)}
    finally:
        source.close()
        target.close()
