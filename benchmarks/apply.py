"""apply vs a raw copy through the same connectors (no translation), in the same run, with peak memory.

    .venv/bin/python benchmarks/apply.py                # default cases, N = 20,000 and 100,000
    .venv/bin/python benchmarks/apply.py --sizes 20000 --cases faiss-milvus
    .venv/bin/python benchmarks/apply.py --cases faiss-parquet --sizes 100000,1000000,10000000 --dim 64

For each case (source -> destination) and N, two fresh subprocesses each write a new destination:
  raw    for b in source.iter_batches(bs): dest.upsert(b); dest.flush()          (no translator, no checkpoint)
  apply  v2v_migrate.apply.apply_migration(...)   (real minilm->e5 translator, checkpoints, lock, threads)
ratio = apply rows/s / raw rows/s (goal >= 0.9). Memory, per subprocess and N: peak RSS (ru_maxrss: every
resident page, including the pages of memory-mapped files, which grow with N by design and which the kernel
drops at will) and peak anonymous RSS (RssAnon of /proc/self/status, sampled every 20 ms by a thread: heap
and anonymous mappings only). "anon growth" divides a case's peak anon by its value at the smallest N:
1.00 = flat, i.e. the streaming path holds no per-row state (an engine that keeps its data in RAM grows).

Data: real minilm vectors of the shared reference data (60,000 rows). N beyond 60,000 repeats them with
small noise (then re-normalised), so the vectors stay realistic; ids 0..N-1; payload {text, row}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = {  # name -> (source kind, dest kind)
    "faiss-milvus": ("faiss", "milvus"),
    "faiss-parquet": ("faiss", "parquet"),
    "milvus-qdrant": ("milvus", "qdrant"),
}
URIS = {
    "faiss": lambda d: f"faiss:{d}/source.faiss",
    "milvus": lambda d: f"milvus:{d}/store.db#docs",
    "parquet": lambda d: f"parquet:{d}/parquet",
    "qdrant": lambda d: f"qdrant:{d}/qdrant#docs",
}
# Where the engine does not allow 1M here: Qdrant local mode keeps every point in Python objects in RAM and
# writes ~500-1,000 points/s on this 2-core machine; Milvus Lite upserts ~1-2k rows/s here (1M = 15+ min per
# pass). Both are measured at the sizes below instead.
MAX_N = {"qdrant": 200_000, "milvus": 200_000}


def truncate(x, dim: int | None):
    """The first `dim` coordinates, re-normalised (--dim: a cheaper stand-in for very large N)."""
    import numpy as np

    if not dim or dim >= x.shape[1]:
        return x
    x = np.ascontiguousarray(x[:, :dim])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_vectors(n: int, start: int, dim: int | None = None):
    import numpy as np

    import shared_data

    base_n = shared_data.info()["models"]["minilm"]["rows"]
    idx = (np.arange(start, start + n) % base_n)
    x = truncate(shared_data.embeddings("minilm", idx), dim)
    wrap = np.arange(start, start + n) >= base_n
    if wrap.any():  # repeated rows: perturbed so that they are distinct vectors
        rng = np.random.default_rng(start)
        x[wrap] += rng.standard_normal((int(wrap.sum()), x.shape[1]), dtype=np.float32) * 0.02
        x[wrap] /= np.linalg.norm(x[wrap], axis=1, keepdims=True)
    return idx, x


def build_source(kind: str, n: int, folder: Path, dim: int | None = None) -> str:
    from connectors import open_store
    from connectors.base import Batch
    import shared_data

    uri = URIS[kind](folder)
    texts = {r["row"]: r["text"] for r in shared_data.texts()}
    with open_store(uri) as s:
        s.create(dim or 384, "cosine", id_type="int", exist_ok=True)
        for start in range(0, n, 20_000):
            m = min(20_000, n - start)
            idx, x = make_vectors(m, start, dim)
            s.upsert(Batch(list(range(start, start + m)), x,
                           [{"text": texts[int(r)], "row": int(r)} for r in idx]))
        s.flush()
    return uri


def build_translator(out: Path, dim: int | None = None) -> Path:
    from translators import fit
    import shared_data

    rows = shared_data.split()["B"][:4000]
    x, y = truncate(shared_data.embeddings("minilm", rows), dim), truncate(shared_data.embeddings("e5", rows), dim)
    fit(x, y, method="procrustes", pairs=(x, y)).save(out)
    return out


class MemorySampler:
    """Peak resident memory of this process, split by kind, from /proc/self/status every `every` seconds.

    VmHWM (= ru_maxrss) counts every resident page, including the pages of memory-mapped files (the FAISS
    source, Parquet files read with memory_map): those are file-backed, the kernel drops them under
    pressure, and they grow with N by design. RssAnon counts the heap and anonymous mappings only: that is
    what must stay flat. Sampling can miss a spike shorter than `every`; VmHWM cannot."""

    def __init__(self, every: float = 0.02):
        import threading

        self.every, self.peak_anon_mb, self.peak_file_mb = every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def status() -> dict:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) / 1024
        return out

    def sample(self) -> None:
        s = self.status()
        self.peak_anon_mb = max(self.peak_anon_mb, s["RssAnon"])
        self.peak_file_mb = max(self.peak_file_mb, s["RssFile"] + s.get("RssShmem", 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def child(mode: str, source: str, dest: str, translator: str, batch_size: int, work: str) -> None:
    """Runs in its own process: one copy, then prints a JSON line with time and peak memory."""
    import torch  # noqa: F401  (both modes pay the same imports before the clock starts)

    import connectors  # noqa: F401
    import translators.model  # noqa: F401

    mem = MemorySampler().__enter__()
    start_anon = mem.peak_anon_mb
    t0 = time.perf_counter()
    if mode == "raw":
        from connectors import open_store

        with open_store(source) as src, open_store(dest) as dst:
            dst.create(src.dim, src.metric, id_type=src.id_type, exist_ok=True)
            n = 0
            for b in src.iter_batches(batch_size):
                dst.upsert(b)
                n += len(b)
            dst.flush()
    else:
        from v2v_migrate.apply import apply_migration

        n = apply_migration(translator, source, dest, batch_size=batch_size, state_dir=Path(work) / "state",
                            device="cpu")["rows_read"]
    seconds = time.perf_counter() - t0
    mem.__exit__(None, None, None)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": n, "seconds": seconds, "rate": n / seconds, "rss_mb": rss_mb,
                      "anon_mb": mem.peak_anon_mb, "file_mb": mem.peak_file_mb, "start_anon_mb": start_anon}))


def run_child(mode: str, source: str, dest_kind: str, translator: Path, batch_size: int, work: Path) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    dest = URIS[dest_kind](out_dir)
    cmd = [sys.executable, __file__, "--child", mode, "--source", source, "--dest", dest,
           "--translator", str(translator), "--batch-size", str(batch_size), "--work", str(out_dir)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{mode} {source} -> {dest} failed:\n{res.stderr[-3000:]}")
    shutil.rmtree(out_dir, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def reusable(kind: str, folder: Path, n: int, dim: int) -> bool:
    """A complete source of this size and dimension already in `folder` (the builder writes it at its end)."""
    if kind != "faiss" or not (folder / "source.faiss").exists():
        return False
    from connectors import open_store

    with open_store(URIS[kind](folder)) as s:
        return s.count() == n and s.dim == dim


def run_case(name: str, n: int, source: str, dst_kind: str, translator: Path, batch_size: int, work: Path,
             rows: list) -> None:
    raw = run_child("raw", source, dst_kind, translator, batch_size, work)
    app = run_child("apply", source, dst_kind, translator, batch_size, work)
    rows.append((name, n, raw, app))
    print(f"# {name} N={n:,}: raw {json.dumps(raw)}; apply {json.dumps(app)}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--dim", type=int, default=None,
                    help="use only the first DIM coordinates of the 384-d vectors (source and translator), "
                         "re-normalised: makes 10M rows affordable (64: 2.6 GB instead of 15 GB)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed at the end)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--source"), ap.add_argument("--dest"), ap.add_argument("--translator")
    args = ap.parse_args()
    if args.child == "build":  # in its own process: an embedded engine's file is free once it exits
        return print(build_source(args.source, int(args.dest), Path(args.work), args.dim))
    if args.child:
        return child(args.child, args.source, args.dest, args.translator, args.batch_size, args.work)

    work = Path(args.work or tempfile.mkdtemp(prefix="v2v-bench-apply-"))
    work.mkdir(parents=True, exist_ok=True)
    translator = build_translator(work / "translator", args.dim)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, skipped = [], []
    for name in args.cases.split(","):
        src_kind, dst_kind = CASES[name]
        for n in sizes:
            limit = min(MAX_N.get(src_kind, n), MAX_N.get(dst_kind, n))
            if n > limit:
                skipped.append(f"{name} at N={n:,}: over the {limit:,} this engine handles here (see MAX_N)")
                continue
            folder = work / f"src-{src_kind}-{n}"
            folder.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            if reusable(src_kind, folder, n, args.dim or 384):  # --work kept from an interrupted run
                source = URIS[src_kind](folder)
                print(f"# reusing {source} ({n:,} rows)", file=sys.stderr)
                run_case(name, n, source, dst_kind, translator, args.batch_size, work, rows)
                shutil.rmtree(folder, ignore_errors=True)
                continue
            res = subprocess.run([sys.executable, __file__, "--child", "build", "--source", src_kind,
                                  "--dest", str(n), "--work", str(folder)] + (["--dim", str(args.dim)] if args.dim else []),
                                 capture_output=True, text=True,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
            if res.returncode:
                raise SystemExit(f"building the {src_kind} source failed:\n{res.stderr[-3000:]}")
            source = res.stdout.strip().splitlines()[-1]
            print(f"# built {source} ({n:,} rows) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            run_case(name, n, source, dst_kind, translator, args.batch_size, work, rows)
            shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\napply vs raw copy (batch {args.batch_size}, {os.cpu_count()} CPUs, load avg {load:.1f}, "
          f"{args.dim or 384}-d, translator: procrustes minilm->e5 on CPU)\n")
    print("| case | N | raw rows/s | apply rows/s | ratio apply/raw | raw peak RSS MB | apply peak RSS MB | "
          "raw peak anon MB | apply peak anon MB | anon growth raw / apply |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    first: dict = {}
    for name, n, raw, app in rows:
        base = first.setdefault(name, (raw, app))  # anon growth: against the case's smallest N
        growth = f"{raw['anon_mb'] / base[0]['anon_mb']:.2f} / {app['anon_mb'] / base[1]['anon_mb']:.2f}"
        print(f"| {name} | {n:,} | {raw['rate']:,.0f} | {app['rate']:,.0f} | {app['rate'] / raw['rate']:.2f} | "
              f"{raw['rss_mb']:,.0f} | {app['rss_mb']:,.0f} | {raw['anon_mb']:,.0f} | {app['anon_mb']:,.0f} | "
              f"{growth} |")
    for s in skipped:
        print(f"\nskipped: {s}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
