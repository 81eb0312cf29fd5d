"""Why `auto` refines with optimal transport: OT (Wasserstein-Procrustes) vs CSLS mutual-NN rounds.

Per ordered model pair, on the shared data's protocol (source sees half A, target half B, no pairs):
1. from each unsupervised start `auto` makes (identity when dims match, similarity profiles, 2 GW restarts),
   refine with OT and with CSLS rounds; print true top-1 on the 8,192 held-out pairs and the unsupervised
   criterion `auto` ranks restarts by (so one can see it picks the right one);
2. from the SUPERVISED Procrustes map (10k true pairs), run the same unpaired refinements and print where
   they drift: the ceiling of the unpaired objective itself, whatever the start.

    .venv/bin/python benchmarks/ot_refinement.py --pairs l3:minilm,mpnet:minilm,minilm:e5
Figures are in the fit space (normalised, centred, normalised), as `auto` sees them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The repo first (its packages), then benchmarks/ (shared_data.py; its connectors.py must not shadow the package).
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from translators.linear import procrustes, side_stats, to_fit_space, unit  # noqa: E402
from translators.matching import csls_mutual_nn, similarity_profiles  # noqa: E402
from translators.unsupervised import (_criterion, _gw_init, _refine_linear, _refine_ot,  # noqa: E402
                                      _stochastic_induction)
import shared_data  # noqa: E402


def load(src, tgt, n, seed=0):
    sp, models = shared_data.split(), shared_data.info()["models"]
    covered = min(models[src]["rows"], models[tgt]["rows"])
    a, b = sp["A"][sp["A"] < covered], sp["B"][sp["B"] < covered]
    sx, sy = side_stats(shared_data.embeddings(src, a)), side_stats(shared_data.embeddings(tgt, b))
    fx = lambda rows: to_fit_space(shared_data.embeddings(src, rows), sx["mean"])  # noqa: E731
    fy = lambda rows: to_fit_space(shared_data.embeddings(tgt, rows), sy["mean"])  # noqa: E731
    rng = np.random.default_rng(seed)
    a, b = rng.permutation(a), rng.permutation(b)
    return {"xs": fx(a[:n]), "ys": fy(b[:n]), "xe": fx(a[n:n + 2000]), "ye": fy(b[n:n + 2000]),
            "xt": fx(sp["test"]), "yt": fy(sp["test"]), "xp": fx(a[:10000]), "yp": fy(a[:10000])}


def top1(w, d):
    z = unit(d["xt"] @ w)
    return float(np.mean(np.argmax(z @ d["yt"].T, axis=1) == np.arange(len(z))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="l3:minilm,mpnet:minilm,minilm:e5")
    ap.add_argument("--sample", type=int, default=5000)
    args = ap.parse_args()
    print(f"# .venv/bin/python benchmarks/ot_refinement.py --pairs {args.pairs} --sample {args.sample}")
    print("| pair | start | start top-1 | OT top-1 | OT criterion | CSLS top-1 | CSLS criterion | OT s |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in args.pairs.split(","):
        src, tgt = pair.split(":")
        d = load(src, tgt, args.sample)
        xs, ys = d["xs"], d["ys"]
        starts = {}
        if xs.shape[1] == ys.shape[1]:
            starts["identity"] = np.eye(xs.shape[1], dtype=np.float32)
        k = min(3000, len(xs), len(ys))
        i, j, _, _, _ = csls_mutual_nn(similarity_profiles(xs[:k]), similarity_profiles(ys[:k]))
        starts["profiles"] = _stochastic_induction(procrustes(xs[:k][i], ys[:k][j]), xs[:k], ys[:k],
                                                   np.random.default_rng([0, 999]), 40)
        for r in range(2):
            starts[f"gw{r}"] = _gw_init(xs, ys, np.random.default_rng([0, r]), 128, 2e-3, None, 10.0)[0]
        starts["supervised (10k pairs)"] = procrustes(d["xp"], d["yp"])
        for name, w in starts.items():
            t = time.perf_counter()
            w_ot = _refine_ot(w, xs, ys, None, list(np.geomspace(0.1, 0.05, 10)), 10.0)
            t_ot = time.perf_counter() - t
            w_csls = _refine_linear(w, xs, ys, None, 10, 10.0)
            print(f"| {src}→{tgt} | {name} | {top1(w, d):.4f} | {top1(w_ot, d):.4f} | "
                  f"{_criterion(w_ot, d['xe'], d['ye']):.4f} | {top1(w_csls, d):.4f} | "
                  f"{_criterion(w_csls, d['xe'], d['ye']):.4f} | {t_ot:.1f} |", flush=True)
    print("\nThe 'supervised' rows are the ceiling: unpaired refinement started at the true map drifts to them.")


if __name__ == "__main__":
    main()
