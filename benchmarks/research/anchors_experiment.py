"""Do translators.anchors candidates land in the right basin? Figures per model pair, on the shared split.

Protocol (data README): the source model sees only rows A, the target only rows B (no pairs); fidelity on the
`test` rows, in fit space, pool 8,192. Each candidate is refined by the auto method's own
`_refine_linear` and scored by its unsupervised `_criterion` on held-out unpaired rows; the candidate with the
best criterion is "chosen" (labels never used for the choice). Baseline printed in the same run: supervised
Procrustes on 10,000 pairs (or all the rows the pair of models covers) of A, and the identity map where dims match.

  .venv/bin/python benchmarks/anchors_experiment.py [--pairs minilm:e5,...] [--resplit SEED] [--seed N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The repo first (its packages), then benchmarks/ (shared_data.py; its connectors.py must not shadow the package).
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from anchors import init_candidates  # noqa: E402
from translators.linear import procrustes, to_fit_space, unit
from translators.metrics import paired_metrics
from translators.unsupervised import _criterion, _refine_linear
import shared_data

PAIRS = "minilm:e5,e5:minilm,minilm:mpnet,mpnet:minilm,l3:minilm"


def covered(model, rows):
    return rows[rows < shared_data.info()["models"][model]["rows"]]


def load_split(resplit: int | None):
    sp = shared_data.split()
    if resplit is None:
        return sp
    rows = np.concatenate([sp["A"], sp["B"]])
    rows = np.random.default_rng(resplit).permutation(rows)
    return {"test": sp["test"], "A": rows[: len(rows) // 2], "B": rows[len(rows) // 2:]}


def run_pair(src, tgt, sp, seed, budget, sample=6000, eval_sample=3000):
    a, b = covered(src, sp["A"]), covered(tgt, sp["B"])
    xa, yb = shared_data.embeddings(src, a), shared_data.embeddings(tgt, b)
    mx, my = unit(xa).mean(0), unit(yb).mean(0)
    x_all, y_all = to_fit_space(xa, mx), to_fit_space(yb, my)
    xt = to_fit_space(shared_data.embeddings(src, sp["test"]), mx)
    yt = to_fit_space(shared_data.embeddings(tgt, sp["test"]), my)
    rng = np.random.default_rng(seed)
    xp, yp = rng.permutation(len(x_all)), rng.permutation(len(y_all))
    n_ex, n_ey = min(eval_sample, len(x_all) // 3), min(eval_sample, len(y_all) // 3)
    x_eval, y_eval = x_all[xp[:n_ex]], y_all[yp[:n_ey]]
    xs, ys = x_all[xp[n_ex:n_ex + sample]], y_all[yp[n_ey:n_ey + sample]]

    def fidelity(w):
        m = paired_metrics(unit(xt @ w), yt, pool=8192)
        return m["top1"], m["mean_cosine"]

    rows = []
    pa = covered(src, covered(tgt, sp["A"]))[:10000]
    w_sup = procrustes(to_fit_space(shared_data.embeddings(src, pa), mx), to_fit_space(shared_data.embeddings(tgt, pa), my))
    rows.append(("supervised procrustes", _criterion(w_sup, x_eval, y_eval), *fidelity(w_sup), 0.0))
    if xa.shape[1] == yb.shape[1]:
        w_id = _refine_linear(np.eye(xa.shape[1], dtype=np.float32), xs, ys, None, 6, 10.0)
        rows.append(("identity+refine", _criterion(w_id, x_eval, y_eval), *fidelity(w_id), 0.0))
    t0 = time.perf_counter()
    cands = init_candidates(xs, ys, np.random.default_rng(seed), budget_s=budget)
    t_init = time.perf_counter() - t0
    best = None
    for name, w0 in cands:
        t1 = time.perf_counter()
        w = _refine_linear(w0, xs, ys, None, 6, 10.0)
        t_ref = time.perf_counter() - t1
        top1_0, cos0 = fidelity(w0)
        crit = _criterion(w, x_eval, y_eval)
        rows.append((f"{name} (init: top1 {top1_0:.3f})", crit, *fidelity(w), t_ref))
        if best is None or crit > best[1]:
            best = rows[-1]
    rows.append((f"CHOSEN by criterion: {best[0].split(' ')[0]}", *best[1:4], t_init))
    return rows, t_init


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resplit", type=int, default=None, help="reshuffle A u B with this seed")
    ap.add_argument("--budget", type=float, default=60.0)
    args = ap.parse_args()
    if shared_data.data_root() is None:
        raise SystemExit("shared data not found (set V2V_SHARED_DATA)")
    sp = load_split(args.resplit)
    split_name = "shared split" if args.resplit is None else f"re-split seed {args.resplit}"
    print(f"# anchors experiment: {split_name}, seed {args.seed}, budget {args.budget:.0f}s, pool 8192, fit space")
    for pair in args.pairs.split(","):
        src, tgt = pair.split(":")
        rows, t_init = run_pair(src, tgt, sp, args.seed, args.budget)
        print(f"\n## {src} -> {tgt}   (init_candidates: {t_init:.1f}s)")
        print(f"| {'map':44s} | criterion | top1  | mean_cos | seconds |")
        print(f"|{'-' * 46}|-----------|-------|----------|---------|")
        for name, crit, t1, cos, sec in rows:
            print(f"| {name:44s} | {crit:9.4f} | {t1:.3f} | {cos:8.4f} | {sec:7.1f} |", flush=True)


if __name__ == "__main__":
    main()
