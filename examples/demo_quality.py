"""Which translator (and how many training vectors) gives what retrieval quality on the demo data?

    python examples/demo_quality.py                      # identity, random, ridge (pairs: upper bound), auto
    python examples/demo_quality.py auto:2000 auto:8000  # METHOD[:N] = fit on the first N vectors per side

Unsupervised methods see only the source (old model) and the target (new model, OTHER texts); 'ridge' is
fitted on known pairs (new-model vectors of 2,000 source texts taken from the shared data, disjoint from the
held-out pairs), as the supervised upper bound. Every row is measured on the demo's held-out pairs with the
report's own definitions (v2v_migrate.report: retention = recall@10 over translated docs, exact search).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # packages, then shared_data.py

import translators  # noqa: E402
from translators.metrics import paired_metrics  # noqa: E402
from v2v_migrate import report_metrics as rm  # noqa: E402

DATA = REPO / "v2v_migrate" / "demo_data"


def load():
    f32 = lambda name: np.load(DATA / name).astype(np.float32)  # noqa: E731
    x, t, p = f32("source_old.f16.npy"), f32("target_new.f16.npy"), f32("pairs_new.f16.npy")
    src = [json.loads(line)["id"] for line in open(DATA / "source.jsonl")]
    held = [json.loads(line)["id"] for line in open(DATA / "pairs.jsonl")]
    pos = {r: i for i, r in enumerate(src)}
    return x, t, x[[pos[r] for r in held]], p, [r for r in src if r not in set(held)]


def main(specs: list[str]) -> None:
    x, t, xp, yp, train_rows = load()
    print(f"| method | vectors per side | fit s | mean cosine | top-1 (pool {len(yp)}) | mean rank | retention@10 |")
    print("|---|---|---|---|---|---|---|")
    for spec in specs:
        method, _, n = spec.partition(":")
        n = int(n) if n else len(x)
        pairs = None
        if method in ("ridge", "procrustes"):
            import shared_data

            rows = np.asarray(train_rows[:2000])  # source texts NOT in the held-out pairs
            pairs = (shared_data.embeddings("l3", rows), shared_data.embeddings("minilm", rows))
        t0 = time.monotonic()
        tr = translators.fit(x[:n], t[:n], method=method, pairs=pairs, seed=0, device="cpu")
        fit_s = time.monotonic() - t0
        pred = tr(xp)
        m = paired_metrics(pred, yp)
        q = np.arange(len(yp))
        retention = rm.recall_curve(yp, q, yp, pred, "cosine", max_k=10)[9]
        print(f"| {method} | {n} | {fit_s:.1f} | {m['mean_cosine']:.3f} | {m['top1']:.3f} | {m['mean_rank']:.1f} "
              f"| {retention:.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["identity", "random", "ridge", "auto"])
