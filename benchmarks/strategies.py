"""Status quo, query bridge, migrate or re-embed? The four strategies side by side on the shared data.

Per model pair (old -> new): a translator F (old -> new) and a query bridge B (new -> old), both `ridge` on
--pairs known pairs (the `train --encoder` default: 4,000 texts) drawn from A ∪ B, evaluated on the 8,192
held-out `test` rows (never trained on) with 1,000 new-model queries, exactly as `report` does
(v2v_migrate.strategies.compare): retention = share of the new model's exact top-10 found, known-item top-1
among 8,192. Then the retention as the re-embedded share grows (v2v_migrate.strategies.mixed_retention:
a seeded share of the translated documents replaced by true new-model vectors), and each strategy's cost
projected to --rows source rows from rates measured here (translate, bridge, write into a scratch Parquet
dataset, read from a FAISS file) and the encoders' texts/s on 2 cores from ../shared/data/README.md (the
encoders themselves are not run here). Ratios are against the status quo's retention.

    .venv/bin/python benchmarks/strategies.py                 # three pairs, ~1 min
    .venv/bin/python benchmarks/strategies.py --pairs 10000 --rows 100000000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shared_data  # noqa: E402

MODEL_PAIRS = ["mpnet:minilm", "l3:minilm", "minilm:e5"]
# texts/s of each encoder on 2 CPU cores, measured when the shared data was made (../shared/data/README.md)
ENCODE_RATE = {"minilm": 95.0, "l3": 150.0, "e5": 35.0, "mpnet": 20.0}
QUERIES = 1000
SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _timed_rate(fn, rows: int) -> float:
    t0 = time.perf_counter()
    fn()
    return rows / max(time.perf_counter() - t0, 1e-9)


def read_rate(vectors: np.ndarray) -> float:
    """Rows/s streamed out of a FAISS file of these vectors (the source engine of the demo)."""
    from connectors import Batch, open_store

    with tempfile.TemporaryDirectory(prefix="v2v-bench-") as d:
        uri = f"faiss:{d}/old.faiss"
        with open_store(uri) as s:
            s.create(vectors.shape[1], "cosine", id_type="int")
            s.upsert(Batch(list(range(len(vectors))), np.ascontiguousarray(vectors), None))
            s.flush()
        with open_store(uri) as s:
            return _timed_rate(lambda: sum(len(b) for b in s.iter_batches(1024)), len(vectors))


def run_pair(src: str, tgt: str, n_pairs: int, rows: int, seed: int) -> dict:
    import translators
    from v2v_migrate import strategies as st
    from v2v_migrate.strategies_report import write_rate

    sp = shared_data.split()
    covered = min(shared_data.info()["models"][m]["rows"] for m in (src, tgt))
    pool = np.concatenate([sp["A"], sp["B"]])
    pool = pool[pool < covered]
    train = np.sort(np.random.default_rng(seed).permutation(pool)[:n_pairs])
    xp, yp = shared_data.embeddings(src, train), shared_data.embeddings(tgt, train)
    t0 = time.perf_counter()
    forward = translators.fit(xp, yp, method="ridge", pairs=(xp, yp), seed=seed, device="cpu")
    bridge = translators.fit(yp, xp, method="ridge", pairs=(yp, xp), seed=seed, device="cpu")
    fit_s = time.perf_counter() - t0
    test = sp["test"]
    x, y = shared_data.embeddings(src, test), shared_data.embeddings(tgt, test)
    qrows = np.sort(np.random.default_rng(0).choice(len(test), QUERIES, replace=False))
    fx, by = forward(x), bridge(y)
    figures = st.compare(x, y, fx, by, qrows)
    rates = {"read": read_rate(x), "translate": _timed_rate(lambda: forward(x), len(x)),
             "bridge": _timed_rate(lambda: bridge(y), len(y)), "encode": ENCODE_RATE[tgt], "write": write_rate(fx)}
    costs = st.project_costs(rows, rates)
    return {"pair": f"{src}->{tgt}", "figures": figures, "rates": rates, "costs": costs, "fit_seconds": fit_s,
            "progressive": st.mixed_retention(y, fx, qrows, shares=SHARES, seed=seed),
            "recommendation": st.recommend(figures, costs)}


def _dur(s) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def render(results: list[dict], rows: int, n_pairs: int) -> str:
    from v2v_migrate.strategies import LABELS, STRATEGIES

    out = [f"Strategies on {QUERIES:,} queries over the 8,192 held-out test rows; ridge F and bridge B on "
           f"{n_pairs:,} pairs; costs projected to {rows:,} source rows", ""]
    out.append(f"{'pair':<15}{'strategy':<14}{'retention':>10}{'x status quo':>13}{'known-item':>11}"
               f"{'writes':>14}{'time':>10}{'ms/query':>10}")
    for r in results:
        sq = r["figures"]["status_quo"]["retention"]
        for s in STRATEGIES:
            f, c = r["figures"][s], r["costs"][s]
            out.append(f"{r['pair']:<15}{LABELS[s]:<14}{f['retention']:>10.3f}{f['retention'] / sq:>13.2f}"
                       f"{f['known_item_top1']:>11.3f}{c['writes']:>14,}{_dur(c['seconds']):>10}"
                       f"{c['query_ms']:>10.4f}")
        rt = r["rates"]
        out.append(f"{'':<15}rates/s: read {rt['read']:,.0f}, translate {rt['translate']:,.0f}, bridge "
                   f"{rt['bridge']:,.0f}, encode {rt['encode']:,.0f} (README), write {rt['write']:,.0f} "
                   f"(Parquet); fit F+B {r['fit_seconds']:.1f} s")
        rec = r["recommendation"]
        out.append(f"{'':<15}recommended: {LABELS[rec['strategy']]} - {'; '.join(rec['reasons'])}")
        out.append("")
    out.append("Retention as the re-embedded share grows (translated rows replaced by true new-model vectors)")
    out.append(f"{'pair':<15}" + "".join(f"{int(100 * s):>7}%" for s in SHARES))
    for r in results:
        out.append(f"{r['pair']:<15}" + "".join(f"{m['retention']:>8.3f}" for m in r["progressive"]))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-pairs", nargs="+", default=MODEL_PAIRS, help="old:new model names")
    ap.add_argument("--pairs", type=int, default=4000, help="known pairs F and B are fitted on")
    ap.add_argument("--rows", type=int, default=10_000_000, help="source size the costs are projected to")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if shared_data.data_root() is None:
        print("shared data not found: set V2V_SHARED_DATA", file=sys.stderr)
        return 2
    results = [run_pair(*p.split(":"), args.pairs, args.rows, args.seed) for p in args.model_pairs]
    print(render(results, args.rows, args.pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
