"""CPU figures for vec2vec and the non-linear refinement on the shared real embeddings.

Protocol (data README): source model sees only half A, target model only half B; paired metrics on the 8,192
held-out rows (pool 8,192). Bases for refinement: supervised Procrustes on every A u B pair (the reference to
beat) and the default unsupervised method ('auto') when it is installed.

    PYTHONPATH=. .venv/bin/python benchmarks/vec2vec_refine_cpu.py [--targets e5 mpnet] [--v2v-budget 300]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The repo first (its packages), then benchmarks/ (shared_data.py; its connectors.py must not shadow the package).
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from translators import fit  # noqa: E402
from translators.metrics import paired_metrics  # noqa: E402
from translators.refine import refine_translator  # noqa: E402
import shared_data as sd  # noqa: E402


def row(name, m, secs=None):
    s = "" if secs is None else f"{secs:8.1f}"
    print(f"| {name:42s} | {m['mean_cosine']:.4f} | {m['top1']:.4f} | {m['mean_rank']:8.2f} | {s} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="minilm")
    ap.add_argument("--targets", nargs="+", default=["e5", "mpnet"])
    ap.add_argument("--v2v-budget", type=float, default=0.0, help="seconds of CPU vec2vec per pair (0: skip)")
    ap.add_argument("--refine-budget", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bases", nargs="*", default=["procrustes", "auto"], help="linear maps to refine (none: skip)")
    args = ap.parse_args()
    sp = sd.split()
    for tgt in args.targets:
        covered = sd.info()["models"][tgt]["rows"]
        a, b = sp["A"][sp["A"] < covered], sp["B"][sp["B"] < covered]
        x, y = sd.embeddings(args.source, a), sd.embeddings(tgt, b)
        xt, yt = sd.embeddings(args.source, sp["test"]), sd.embeddings(tgt, sp["test"])
        print(f"\n{args.source} -> {tgt}: {len(x)} source (A), {len(y)} target (B), {len(xt)} held-out")
        print("| translator | mean cos | top-1 | mean rank | seconds |\n|---|---|---|---|---|")
        pairs = np.concatenate([a, b])
        bases = {} if "procrustes" not in args.bases else {"procrustes (supervised, all A+B pairs)":
                 lambda: fit(x, y, method="procrustes", pairs=(sd.embeddings(args.source, pairs),
                                                               sd.embeddings(tgt, pairs)))}
        try:
            if "auto" not in args.bases:
                raise ImportError("not asked for")
            import translators.unsupervised  # noqa: F401
            bases["auto (unsupervised linear)"] = lambda: fit(x, y, method="auto", seed=args.seed, device="cpu")
        except ImportError:
            print("(method 'auto' not asked for or not installed)")
        for name, make in bases.items():
            t = time.perf_counter()
            base = make()
            row(name, paired_metrics(base(xt), yt), time.perf_counter() - t)
            t = time.perf_counter()
            ref = refine_translator(base, x, y, seed=args.seed, device="cpu", time_budget_s=args.refine_budget)
            row(f"  + refine ({ref.metrics['health']['steps']} steps, best "
                f"{ref.metrics['health']['best_step']})", paired_metrics(ref(xt), yt), time.perf_counter() - t)
        if args.v2v_budget > 0:
            from translators.vec2vec import fit_vec2vec
            t = time.perf_counter()
            v = fit_vec2vec(x, y, seed=args.seed, device="cpu", d_adapter=256, d_hidden=256,
                            time_budget_s=args.v2v_budget, eval_every=100)
            h = v.metrics["health"]
            row(f"vec2vec CPU ({h['steps']} steps, w256)", paired_metrics(v(xt), yt), time.perf_counter() - t)


if __name__ == "__main__":
    main()
