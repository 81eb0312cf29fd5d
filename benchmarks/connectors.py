"""Connector throughput and memory: write and read vectors/s and peak RSS per engine, at two store sizes.

`milvus-server` is a real Milvus 2.3.5 standalone server (tests/servers.py; `make milvus-server` installs it),
started fresh for each size on 127.0.0.1: its own peak RSS (VmHWM of the server process) is a column of its own,
next to the client's.

Each (engine, N) runs in its own subprocess, so peak RSS (ru_maxrss) belongs to that engine alone. Vectors
are 384-d: the shared minilm rows, tiled and perturbed (seeded noise per batch) to reach N, generated batch
by batch, so the generator itself holds one batch; only the store calls are timed. Baseline in the same run:
a raw float32 .npy memmap (write, then read back) -- the disk/numpy floor. Memory: peak RSS (ru_maxrss,
includes mmap'd file pages such as a FAISS/Edge index) and peak anonymous RSS (heap, sampled after every
batch); the anon ratio between the two sizes shows whether the connector's memory grows with N (1.0 = flat).

    .venv/bin/python benchmarks/connectors.py                 # default sizes (see SIZES), ~10 min on 2 cores
    .venv/bin/python benchmarks/connectors.py --quick         # 10x smaller, ~1 min
    .venv/bin/python benchmarks/connectors.py --engines qdrant-edge,faiss --sizes 100000,1000000
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DIM = 384
BATCH = 10_000
# Engines too slow for 1M rows on 2 CPU cores get smaller sizes (said so in the output):
# Milvus Lite 3.x is a Python gRPC server in-process (~5k rows/s); qdrant-client local mode is pure Python
# and rebuilds numpy arrays as it grows.
SIZES = {
    "npy-baseline": (100_000, 1_000_000),
    "faiss": (100_000, 1_000_000),
    "parquet": (100_000, 1_000_000),
    "qdrant-edge": (100_000, 1_000_000),
    "milvus": (10_000, 50_000),
    "milvus-server": (20_000, 100_000),
    "qdrant": (5_000, 20_000),
}
MODULES = {"faiss": "faiss_store", "parquet": "parquet_store", "milvus": "milvus_store",
           "qdrant": "qdrant_store", "qdrant-edge": "qdrant_edge_store", "milvus-server": "milvus_store"}
SERVER_URL_ENV = "V2V_BENCH_MILVUS_URL"


def batches(n: int):
    """(ids, vectors, payloads) batches of the tiled + perturbed shared data, deterministic per batch."""
    import shared_data

    base = np.load(shared_data.corpus_dir() / "minilm.f16.npy", mmap_mode="r")
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        rows = np.arange(start, stop) % len(base)
        rng = np.random.default_rng(start)
        v = np.asarray(base[rows], dtype=np.float32) + rng.normal(0, 0.01, (stop - start, DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        yield list(range(start, stop)), v, [{"row": i, "src": "bench"} for i in range(start, stop)]


def uri_for(engine: str, root: str) -> str:
    if engine == "milvus-server":
        return f"milvus:{os.environ[SERVER_URL_ENV]}#b"
    return {"faiss": f"faiss:{root}/b.faiss", "parquet": f"parquet:{root}/b", "milvus": f"milvus:{root}/b.db#b",
            "qdrant": f"qdrant:{root}/q#b", "qdrant-edge": f"qdrant-edge:{root}/e#b"}[engine]


def rss_anon_mb() -> float:
    """Anonymous resident memory (heap): unlike ru_maxrss it leaves out mmap'd file pages (index files,
    Parquet, Edge segments), which the kernel may drop at will and which grow with N by design."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(engine: str, n: int, root: str) -> dict:
    """Times only the store calls (not the generation of the vectors); samples RssAnon after each batch."""
    anon_peak = rss_anon_mb()
    write_s = read_s = 0.0
    total = 0
    if engine == "npy-baseline":
        path = Path(root) / "b.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
        for ids, v, _ in batches(n):
            t0 = time.perf_counter()
            out[ids[0]:ids[-1] + 1] = v
            write_s += time.perf_counter() - t0
            anon_peak = max(anon_peak, rss_anon_mb())
        t0 = time.perf_counter()
        out.flush()
        del out
        write_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        arr = np.load(path, mmap_mode="r")
        for s in range(0, n, BATCH):
            total += len(np.array(arr[s:s + BATCH]))
            anon_peak = max(anon_peak, rss_anon_mb())
        read_s = time.perf_counter() - t0
    else:
        from connectors import Batch, open_store

        uri = uri_for(engine, root)
        t0 = time.perf_counter()
        store = open_store(uri)
        store.create(DIM, "cosine", id_type="int")
        write_s += time.perf_counter() - t0
        for ids, v, p in batches(n):
            t0 = time.perf_counter()
            store.upsert(Batch(ids, v, p))
            write_s += time.perf_counter() - t0
            anon_peak = max(anon_peak, rss_anon_mb())
        t0 = time.perf_counter()
        store.flush()
        store.close()
        write_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        with open_store(uri) as store:
            for b in store.iter_batches(BATCH):
                total += len(b)
                anon_peak = max(anon_peak, rss_anon_mb())
        read_s = time.perf_counter() - t0
    assert total == n, f"{engine}: read {total} of {n} rows"
    return {"engine": engine, "n": n, "write_s": write_s, "read_s": read_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_anon_mb": anon_peak}


def run_one(engine: str, n: int, timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"v2v-bench-{engine}-") as root:
        server, env = None, dict(os.environ)
        if engine == "milvus-server":
            sys.path.insert(0, str(REPO / "tests"))
            import servers

            if servers.unavailable_reason():
                return {"engine": engine, "n": n, "error": servers.unavailable_reason()}
            server = servers.MilvusServer(Path(root) / "server").start()
            env[SERVER_URL_ENV] = server.url
        try:
            proc = subprocess.run([sys.executable, __file__, "--worker", engine, str(n), root],
                                  capture_output=True, text=True, timeout=timeout, env=env)
            server_peak = _peak_rss_mb(server.server_pid) if server else None
        finally:
            if server:
                server.stop()
    if proc.returncode != 0:
        return {"engine": engine, "n": n, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:120]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if server_peak is not None:
        out["server_peak_rss_mb"] = server_peak
    return out


def _peak_rss_mb(pid: int | None) -> float | None:
    """Peak resident memory (VmHWM) of another process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "N", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--engines", default=",".join(SIZES), help="comma-separated engines")
    ap.add_argument("--sizes", default=None, help="two sizes for every engine, e.g. 100000,1000000")
    ap.add_argument("--quick", action="store_true", help="every default size / 10")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per engine and size")
    args = ap.parse_args()
    if args.worker:
        engine, n, root = args.worker
        print(json.dumps(worker(engine, int(n), root)))
        return
    results = []
    for engine in args.engines.split(","):
        if engine != "npy-baseline" and importlib.util.find_spec(f"connectors.{MODULES[engine]}") is None:
            print(f"# {engine}: connector not present, skipped")
            continue
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES[engine])
        if args.quick:
            sizes = [max(s // 10, 1000) for s in sizes]
        if not args.sizes and sizes[-1] < SIZES["faiss"][-1] // (10 if args.quick else 1):
            print(f"# {engine}: sizes {sizes} (smaller than the others: too slow for 1M rows here)")
        for n in sizes:
            r = run_one(engine, n, args.timeout)
            results.append(r)
            print("# " + json.dumps(r), flush=True)
    print(f"\n{DIM}-d float32 vectors, batches of {BATCH:,}, metric cosine, payload {{row, src}}; "
          f"each row a fresh subprocess.\n")
    print("| engine | N | write vec/s | read vec/s | peak RSS MB | peak anon MB | anon ratio (large/small N) | "
          "server peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    by_engine: dict = {}
    for r in results:
        by_engine.setdefault(r["engine"], []).append(r)
    for engine, rows in by_engine.items():
        ok = [r for r in rows if "error" not in r]
        ratio = f"{ok[-1]['peak_anon_mb'] / ok[0]['peak_anon_mb']:.2f}" if len(ok) == 2 else "-"
        for r in rows:
            if "error" in r:
                print(f"| {engine} | {r['n']:,} | error: {r['error']} | | | | | |")
                continue
            server = f"{r['server_peak_rss_mb']:,.0f}" if r.get("server_peak_rss_mb") else ""
            print(f"| {engine} | {r['n']:,} | {r['n'] / r['write_s']:,.0f} | {r['n'] / r['read_s']:,.0f} | "
                  f"{r['peak_rss_mb']:,.0f} | {r['peak_anon_mb']:,.0f} | {ratio if r is ok[-1] else ''} | {server} |")


if __name__ == "__main__":
    main()
