"""The alignability probe (translators.alignability) on every ordered model pair of the reference data.

For each pair: the probe on the source model's half A and the target model's half B (unpaired, as `plan`
sees two stores), for several seeds (row draws) and sample sizes, its decision and figures, and its wall
time. The truth it is judged against is what `auto` reached without pairs (docs/results.md): the l3/minilm
and minilm/mpnet pairs align (top-1 0.90-0.98), every pair with e5 fails (top-1 <= 0.001).

    .venv/bin/python benchmarks/research/probe_pairs.py --rows 1000,4000 --seeds 3
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shared_data  # noqa: E402
from fidelity import DEFAULT_PAIRS, halves  # noqa: E402
from translators.alignability import probe  # noqa: E402

ALIGNS_WITHOUT_PAIRS = {"minilm:mpnet", "mpnet:minilm", "l3:minilm", "minilm:l3"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(DEFAULT_PAIRS))
    ap.add_argument("--rows", default="4000", help="rows per side, comma-separated")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--resplit", type=int, default=-1, help="also probe on this seed's re-split of A and B")
    args = ap.parse_args(argv)
    print("| source → target | split | rows | seed | src dim | tgt dim | log ratio | src clust | tgt clust | "
          "decision | truth | right | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    right = total = 0
    splits = [None] + ([args.resplit] if args.resplit >= 0 else [])
    for pair in args.pairs.split(","):
        src, tgt = pair.split(":")
        for split in splits:
            a, b, _ = halves(src, tgt, split)
            x, y = shared_data.embeddings(src, a), shared_data.embeddings(tgt, b)
            for rows in (int(r) for r in args.rows.split(",")):
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    p = probe(x, y, seed=seed, max_rows=rows)
                    wall = time.perf_counter() - started
                    truth = pair in ALIGNS_WITHOUT_PAIRS
                    ok = p["alignable"] == truth
                    right, total = right + ok, total + 1
                    print(f"| {src} → {tgt} | {'A|B' if split is None else f'resplit{split}'} | {p['rows']} | {seed} | "
                          f"{p['source_intrinsic_dim']:.1f} | {p['target_intrinsic_dim']:.1f} | {p['log_ratio']:+.3f} | "
                          f"{p['source_clustering']:.3f} | {p['target_clustering']:.3f} | "
                          f"{'alignable' if p['alignable'] else 'needs pairs'} | {'aligns' if truth else 'fails'} | "
                          f"{'yes' if ok else '**no**'} | {wall:.2f} |", flush=True)
    print(f"\nright on {right} of {total} probes")


if __name__ == "__main__":
    main()
