"""What keeping the apply record with the destination costs: time of one `write_state` + `read_state`
per engine (a commit writes one record after its flush), on a collection/index holding ROWS rows.

    PYTHONPATH=. .venv/bin/python benchmarks/state_write.py [--rows 10000] [--repeats 50] [--milvus-server URL]
Prints one line per engine: median and max milliseconds per write and per read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, before benchmarks/connectors.py
from connectors import open_store  # noqa: E402
from connectors.base import Batch  # noqa: E402


def measure(uri: str, rows: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    with open_store(uri) as s:
        s.create(384, "cosine")
        for start in range(0, rows, 2000):
            n = min(2000, rows - start)
            s.upsert(Batch(list(range(start, start + n)), rng.standard_normal((n, 384)).astype(np.float32)))
        s.flush()
        record = {"source_uri": "faiss:/data/old.faiss", "cursor": 123456, "rows_read": 123456,
                  "translator_fingerprint": "f" * 64, "selection": None, "completed": False}
        writes, reads = [], []
        for i in range(repeats):
            record["rows_read"] = i
            t0 = time.perf_counter()
            s.write_state("apply", record)
            t1 = time.perf_counter()
            assert s.read_state("apply")["rows_read"] == i
            writes.append(t1 - t0)
            reads.append(time.perf_counter() - t1)
    ms = lambda xs: (round(statistics.median(xs) * 1000, 2), round(max(xs) * 1000, 2))  # noqa: E731
    return {"write_ms": ms(writes), "read_ms": ms(reads)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--milvus-server", default=None, help="http://HOST:PORT of a Milvus server to include")
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="v2v-state-bench-"))
    uris = {"faiss": f"faiss:{root / 'x.faiss'}", "parquet": f"parquet:{root / 'pq'}",
            "milvus-lite": f"milvus:{root / 'm.db'}#docs", "qdrant-local": f"qdrant:{root / 'q'}#docs",
            "qdrant-edge": f"qdrant-edge:{root / 'e'}#docs"}
    if a.milvus_server:
        uris["milvus-server"] = f"milvus:{a.milvus_server}#state_bench_{int(time.time())}"
    for name, uri in uris.items():
        r = measure(uri, a.rows, a.repeats)
        print(f"{name:14s} write median {r['write_ms'][0]:7.2f} ms (max {r['write_ms'][1]:7.2f}); "
              f"read median {r['read_ms'][0]:7.2f} ms (max {r['read_ms'][1]:7.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
