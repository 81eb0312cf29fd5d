"""Stage by stage, on one ordered pair: where do the unpaired objectives take a map, and what starts do k
known pairs give? Fit-space top-1 over the 8,192 held-out test rows (pool 8,192; the raw-space figure of
benchmarks/fidelity.py is lower: supervised Procrustes on minilm->e5 is 0.978 here, 0.926 there).

    ceiling  N,..  EPS : from supervised Procrustes (10k pairs), 24 OT rounds (eps EPS) on N rows per side, and
                         30 of mini-vec2vec's closest-point rounds: does the objective keep the right map?
    relstart           : 10 / 30 / 100 / 300 known pairs: the relative-anchor start vs Procrustes on the pairs
    boot     K,..  M   : the relative-anchor start, then 4 rounds adding the M most confident mutual pairs
    anchored K W,..    : auto's relative-anchor start from K pairs, then 16 OT rounds anchored at each pair weight

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/research/stages.py minilm e5 ceiling 6000,12000 0.03
    RESPLIT=1 .venv/bin/python benchmarks/research/stages.py e5 minilm relstart      # another seed's split
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shared_data  # noqa: E402
from translators import minivec2vec as mv  # noqa: E402
from translators.arrays import unit  # noqa: E402
from translators.linear import procrustes, side_stats, to_fit_space  # noqa: E402
from translators.matching import csls_mutual_nn  # noqa: E402
from translators.unsupervised import _refine_ot  # noqa: E402

STARTED = time.time()


def log(*parts):
    print(f"[{time.time() - STARTED:6.0f}s]", *parts, flush=True)


def main(src, tgt, experiment, *args):
    sp = shared_data.split()
    covered = min(shared_data.info()["models"][m]["rows"] for m in (src, tgt))
    a, b, test = sp["A"], sp["B"], sp["test"]
    if os.environ.get("RESPLIT"):
        both = np.concatenate([a, b])
        both = both[np.random.default_rng(int(os.environ["RESPLIT"])).permutation(len(both))]
        a, b = both[: len(both) // 2], both[len(both) // 2:]
    a, b = a[a < covered], b[b < covered]
    x, y = shared_data.embeddings(src, a), shared_data.embeddings(tgt, b)
    ms, mt = side_stats(x)["mean"], side_stats(y)["mean"]
    xs, ys = to_fit_space(x, ms), to_fit_space(y, mt)
    xt, yt = to_fit_space(shared_data.embeddings(src, test), ms), to_fit_space(shared_data.embeddings(tgt, test), mt)
    pool = np.concatenate([a, b])
    rng = np.random.default_rng(0)

    def top1(w):
        return float(np.mean(np.argmax(unit(xt @ w) @ yt.T, axis=1) == np.arange(len(xt))))

    def pairs(k, seed=1000):  # the draw benchmarks/fidelity.py makes for seed 0
        rows = pool[np.random.default_rng(seed).permutation(len(pool))[:k]]
        return to_fit_space(shared_data.embeddings(src, rows), ms), to_fit_space(shared_data.embeddings(tgt, rows), mt)

    if experiment == "ceiling":
        w0 = procrustes(*pairs(10000))
        log("supervised Procrustes, 10k pairs:", top1(w0))
        for n in (int(v) for v in args[0].split(",")):
            xo, yo = xs[rng.permutation(len(xs))[:n]], ys[rng.permutation(len(ys))[:n]]
            w = w0.copy()
            for r in range(3):
                w = _refine_ot(w, xo, yo, None, [float(args[1])] * 8, 3.0, 1.0)
                log(f"{n} rows, OT eps {args[1]}, rounds {8 * (r + 1)}:", top1(w))
        w = w0.copy()
        for r in range(3):
            w = mv.closest_point_rounds(w, xs, ys, rng, dict(mv.DEFAULTS, icp_rounds=10))
            log(f"all rows, closest-point rounds {10 * (r + 1)}:", top1(w))
    elif experiment == "relstart":
        for k in (10, 30, 100, 300):
            px, py = pairs(k)
            log(f"{k} pairs: relative start", top1(mv.relative_start(xs, ys, px, py, 50)),
                "Procrustes on the pairs", top1(procrustes(px, py)))
    elif experiment == "boot":
        n = 12000
        xo, yo = xs[rng.permutation(len(xs))[:n]], ys[rng.permutation(len(ys))[:n]]
        for k in (int(v) for v in args[0].split(",")):
            px, py = pairs(k)
            w = mv.relative_start(xo, yo, px, py, 50)
            log(f"{k} pairs, relative start:", top1(w))
            for it in range(4):
                i, j, _, csls, _ = csls_mutual_nn(unit(xo @ w), yo)
                keep = np.argsort(-csls)[:int(args[1])]
                ax, ay = np.concatenate([px, xo[i[keep]]]), np.concatenate([py, yo[j[keep]]])
                w = mv.relative_start(xo, yo, ax, ay, 50)
                log(f"{k} pairs, confident round {it + 1} ({len(ax)} anchors):", top1(w))


def anchored(src, tgt, k, weights):
    """From the relative-anchor start of k pairs, OT rounds on 12,000 rows per side (eps 0.03) with the pairs
    as anchors at each weight: how far do the pairs hold the unpaired objective?"""
    from translators.unsupervised import DEFAULTS, _relative_pairs_start
    sp = shared_data.split()
    a, b, test = sp["A"], sp["B"], sp["test"]
    x, y = shared_data.embeddings(src, a), shared_data.embeddings(tgt, b)
    ms, mt = side_stats(x)["mean"], side_stats(y)["mean"]
    xs, ys = to_fit_space(x, ms), to_fit_space(y, mt)
    xt, yt = to_fit_space(shared_data.embeddings(src, test), ms), to_fit_space(shared_data.embeddings(tgt, test), mt)
    rng = np.random.default_rng(0)
    xo, yo = xs[rng.permutation(len(xs))[:12000]], ys[rng.permutation(len(ys))[:12000]]
    pool = np.concatenate([a, b])
    rows = pool[np.random.default_rng(1000).permutation(len(pool))[:int(k)]]
    pf = (to_fit_space(shared_data.embeddings(src, rows), ms), to_fit_space(shared_data.embeddings(tgt, rows), mt))
    w0 = _relative_pairs_start(xo[:6000], yo[:6000], pf, DEFAULTS)
    top1 = lambda w: float(np.mean(np.argmax(unit(xt @ w) @ yt.T, axis=1) == np.arange(len(xt))))  # noqa: E731
    log(f"{k} pairs, relative start (6,000 rows, 2 confident rounds):", top1(w0))
    for weight in (float(v) for v in weights.split(",")):
        w = w0.copy()
        for r in range(4):
            w = _refine_ot(w, xo, yo, pf, [0.03] * 4, weight, 1.0)
            log(f"pair weight {weight:g}, OT rounds {4 * (r + 1)}:", top1(w))


if __name__ == "__main__":
    if sys.argv[3] == "anchored":
        anchored(*sys.argv[1:3], *sys.argv[4:6])
    else:
        main(*sys.argv[1:])
