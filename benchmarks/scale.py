"""Scale figures for `apply --engine ray`, translation speed and training time, on this machine.

    .venv/bin/python benchmarks/scale.py                 # all sections, N = 60,000 real minilm vectors
    .venv/bin/python benchmarks/scale.py --n 20000 --skip-train --dest parquet

Sections (one markdown table each, with the machine load noted since the CPU may be shared):
1. apply throughput: the local engine (`apply.apply_migration`) vs `--engine ray` with 1 and 2 workers,
   same source (FAISS flat file with payloads) and destination kind, same N, same translator; ratios to
   the local engine. Ray's start-up (ray.init) is measured apart: it is paid once per run, not per row.
2. translation vectors/s on CPU, 384->384 and 384->768, with 1 thread and all threads.
3. training time of `translators.fit(method='auto')` on the shared-data split (source half A, target
   half B, no pairs), with the held-out fidelity it reached (T1's benchmark owns fidelity; this only times it).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shared_data  # noqa: E402

DEST_URIS = {
    "parquet": lambda d: f"parquet:{d}/dest_parquet",
    "faiss": lambda d: f"faiss:{d}/dest.index",
    "milvus": lambda d: f"milvus:{d}/dest.db#docs",
    "qdrant": lambda d: f"qdrant:{d}/dest_qdrant#docs",
}


def load_note() -> str:
    la = os.getloadavg()
    return f"load average {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} on {os.cpu_count()} CPUs"


def build_source(work: Path, n: int, model: str = "minilm") -> str:
    """A FAISS flat file of the first n real vectors, with a payload sidecar (text id + row)."""
    from connectors import open_store
    from connectors.base import Batch

    have = shared_data.info()["models"][model]["rows"]
    # Beyond the real rows, repeat them under new ids: throughput does not depend on the values.
    vectors = shared_data.embeddings(model, np.arange(n) % have)
    uri = f"faiss:{work}/source.index"
    store = open_store(uri)
    store.create(vectors.shape[1], "cosine", id_type="int")
    for s in range(0, n, 8192):
        ids = list(range(s, min(n, s + 8192)))
        store.upsert(Batch(ids, vectors[s:s + len(ids)], [{"row": i, "tag": f"pkg-{i}"} for i in ids]))
    store.flush()
    store.close()
    return uri


def build_translator(work: Path, source_model: str, target_model: str, name: str) -> str:
    """Supervised Procrustes on 4,000 real pairs: fast and deterministic; apply speed does not depend on it."""
    from translators import fit

    rows = np.arange(4000)
    x, y = shared_data.embeddings(source_model, rows), shared_data.embeddings(target_model, rows)
    t = fit(x, y, method="procrustes", pairs=(x, y))
    path = work / name
    t.save(path)
    return str(path)


def time_apply(engine: str, translator: str, source: str, dest_kind: str, work: Path, workers: int,
               batch_size: int) -> dict:
    from v2v_migrate.apply import apply_migration
    from v2v_migrate.ray_apply import run_ray_apply

    run_dir = work / f"run-{engine}-{workers}-{time.time_ns()}"
    run_dir.mkdir()
    dest = DEST_URIS[dest_kind](run_dir)
    t0 = time.perf_counter()
    if engine == "local":
        summary = apply_migration(translator, source, dest, batch_size=batch_size, device="cpu",
                                  state_dir=run_dir / "state")
    else:
        summary = run_ray_apply(translator_dir=translator, source_uri=source, dest_uri=dest,
                                state_dir=run_dir / "state", batch_size=batch_size, workers=workers,
                                address=None, device="cpu", restart=False, source_options=None,
                                dest_options=None)
    seconds = time.perf_counter() - t0
    shutil.rmtree(run_dir, ignore_errors=True)
    # stream_rate: rows over the engine's streaming loop (the Ray engine's actor start-up left out).
    return {"rows": summary["rows_written"], "seconds": seconds, "rate": summary["rows_written"] / seconds,
            "stream_rate": summary["rate"], "startup": summary.get("startup_seconds", 0.0)}


def section_apply(args, work: Path) -> list[str]:
    import ray

    source = build_source(work, args.n)
    translator = build_translator(work, "minilm", "e5", "t_minilm_e5")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    startup = time.perf_counter() - t0
    runs = [("local", 1), ("ray", 1), ("ray", 2)]
    results = {}
    try:
        for rep in range(args.repeats):
            for engine, workers in runs:
                r = time_apply(engine, translator, source, args.dest, work, workers, args.batch_size)
                assert r["rows"] == args.n, r
                results.setdefault((engine, workers), []).append(r)
    finally:
        ray.shutdown()
    med = {k: {f: float(np.median([r[f] for r in rs])) for f in rs[0]} for k, rs in results.items()}
    base = med[("local", 1)]
    lines = [f"### apply, FAISS flat -> {args.dest}, N = {args.n:,} (minilm 384 -> e5 384, batch "
             f"{args.batch_size}; median of {args.repeats}; {load_note()})", "",
             "| engine | workers | seconds end to end | actor start-up s | vectors/s end to end | "
             "vectors/s streaming | ratio to local (end to end) | ratio to local (streaming) |",
             "|---|---|---|---|---|---|---|---|"]
    for engine, workers in runs:
        m = med[(engine, workers)]
        lines.append(f"| {engine} | {workers} | {m['seconds']:.2f} | {m['startup']:.1f} | {m['rate']:,.0f} | "
                     f"{m['stream_rate']:,.0f} | {m['rate'] / base['rate']:.2f} | "
                     f"{m['stream_rate'] / base['stream_rate']:.2f} |")
    lines += ["", f"Ray start-up (ray.init, local, 2 CPUs), paid once per run: {startup:.1f} s "
              "(not included above: the runs share one Ray instance).", ""]
    return lines


def section_translate(args, work: Path) -> list[str]:
    import torch

    from translators.io import load_translator

    cases = [("minilm", "e5", "384 -> 384"), ("minilm", "mpnet", "384 -> 768")]
    x = shared_data.embeddings("minilm", np.arange(20000))
    lines = [f"### translation on CPU (Procrustes linear map, 20,000 vectors per call chunk of 4,096; "
             f"{load_note()})", "", "| map | threads | vectors/s |", "|---|---|---|"]
    threads_before = torch.get_num_threads()
    for src, tgt, label in cases:
        t = load_translator(build_translator(work, src, tgt, f"t_{src}_{tgt}"))
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            t(x[:4096])  # warm-up
            best = 0.0
            for _ in range(3):
                t0 = time.perf_counter()
                t(x, batch_size=4096)
                best = max(best, len(x) / (time.perf_counter() - t0))
            lines.append(f"| {label} | {threads} | {best:,.0f} |")
    torch.set_num_threads(threads_before)
    return lines + [""]


def section_io(args, work: Path) -> list[str]:
    """Raw connector rates (no translation): what one shard reads and what one writer writes per second."""
    from connectors import open_store
    from connectors.base import Batch

    n = min(args.io_n, 60000)
    (work / "io").mkdir()
    source = build_source(work / "io", n)
    lines = [f"### connector rates, {n:,} minilm vectors (384-d) with 2 payload fields, batch 2048, one process "
             f"({load_note()})", "", "| operation | vectors/s |", "|---|---|"]
    with open_store(source) as src:
        t0 = time.perf_counter()
        batches = list(src.iter_batches(2048))
        lines.append(f"| read FAISS flat + payload sidecar | {n / (time.perf_counter() - t0):,.0f} |")
    for kind in args.io_dests:
        uri = DEST_URIS[kind](work / "io")
        t0 = time.perf_counter()
        with open_store(uri) as dest:
            dest.create(384, "cosine", id_type="int")
            for b in batches:
                dest.upsert(Batch(b.ids, b.vectors, b.payloads))
            dest.flush()
        lines.append(f"| write {kind} (create + upsert + flush) | {n / (time.perf_counter() - t0):,.0f} |")
    return lines + [""]


def section_train(args, work: Path) -> list[str]:
    from translators import fit
    from translators.metrics import paired_metrics

    split = shared_data.split()
    lines = [f"### training time, `fit(method='auto')` on CPU (source half A, target half B, no pairs; "
             f"{load_note()})", "", "| pair | source rows | target rows | seconds | test mean cosine | test top-1 |",
             "|---|---|---|---|---|---|"]
    for src, tgt in args.train_pairs:
        cover = min(shared_data.info()["models"][m]["rows"] for m in (src, tgt))
        a, b, test = (split[k][split[k] < cover] for k in ("A", "B", "test"))
        xs, yt = shared_data.embeddings(src, a), shared_data.embeddings(tgt, b)
        t0 = time.perf_counter()
        translator = fit(xs, yt, method="auto", seed=0)
        seconds = time.perf_counter() - t0
        m = paired_metrics(translator(shared_data.embeddings(src, test)), shared_data.embeddings(tgt, test))
        lines.append(f"| {src} -> {tgt} | {len(a):,} | {len(b):,} | {seconds:.1f} | "
                     f"{m['mean_cosine']:.3f} | {m['top1']:.3f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60000,
                    help="source vectors for the apply section (real rows, repeated past 60,000)")
    ap.add_argument("--dest", choices=sorted(DEST_URIS), default="parquet")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-apply", action="store_true")
    ap.add_argument("--skip-translate", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-io", action="store_true")
    ap.add_argument("--io-n", type=int, default=20000, help="vectors for the connector-rate section")
    ap.add_argument("--io-dests", default="parquet,faiss,milvus,qdrant")
    ap.add_argument("--train-pairs", default="minilm:e5,minilm:mpnet",
                    help="comma-separated SRC:TGT pairs to time fit(method='auto') on")
    ap.add_argument("--json", help="also write the tables' lines to this JSON file")
    args = ap.parse_args()
    args.train_pairs = [tuple(p.split(":")) for p in args.train_pairs.split(",") if p]
    args.io_dests = [d for d in args.io_dests.split(",") if d]
    if shared_data.data_root() is None:
        sys.exit("shared data not found: set V2V_SHARED_DATA to the folder holding pypi/")
    work = Path(tempfile.mkdtemp(prefix="v2v-scale-"))
    lines: list[str] = []
    try:
        for skip, section in ((args.skip_apply, section_apply), (args.skip_translate, section_translate),
                              (args.skip_io, section_io), (args.skip_train, section_train)):
            if not skip:
                part = section(args, work)
                print("\n".join(part), flush=True)
                lines += part
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"lines": lines}, indent=1))


if __name__ == "__main__":
    main()
