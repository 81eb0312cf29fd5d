"""Cross-engine copies: every (source, destination) pair of engines keeps ids, vectors and payloads exactly.

5,000 real vectors (minilm rows of the shared data) with mixed payloads and three kinds of ids, copied
source -> destination with the Store API (create + iter_batches + upsert), then read back:
ids, float32 vectors (bit-exact) and payloads identical; a second copy leaves exactly 5,000 rows;
`sample()` is reproducible by seed and spread over the whole store.

The metric is 'ip' here: Qdrant local mode renormalises Cosine vectors on write (<= 1 ulp changes, see
test_qdrant_store.py), and FAISS cosine stores hold normalised vectors, so bit-exact copies are only a
promise for ip/l2 there. Default run: a ring in which every embedded engine is source once and destination
once, the id kinds taking turns (5 pairs, ~1.5 min on 2 cores: Milvus Lite and Qdrant local mode are slow
writers), and a real Milvus server (tests/servers.py) to and from FAISS, Parquet and Qdrant Edge (6 pairs);
the full matrix (all 36 ordered pairs incl. same-engine copies, x 3 id kinds) is `slow`.
"""
from __future__ import annotations

import importlib.util
import math
import uuid

import numpy as np
import pytest

from connectors import open_store
from conftest import mixed_payloads

N = 5000
BATCH = 1000
ALL_ENGINES = ["faiss", "parquet", "milvus", "qdrant", "qdrant-edge", "milvus-server"]
MODULES = {"faiss": "faiss_store", "parquet": "parquet_store", "milvus": "milvus_store",
           "qdrant": "qdrant_store", "qdrant-edge": "qdrant_edge_store", "milvus-server": "milvus_store"}
ENGINES = [e for e in ALL_ENGINES if importlib.util.find_spec(f"connectors.{MODULES[e]}") is not None]
EMBEDDED = [e for e in ENGINES if e != "milvus-server"]
ID_KINDS = ["int", "str", "uuid"]


def _ring_pairs() -> set[tuple[str, str, str]]:
    """A ring: each embedded engine is source once and destination once, the id kinds taking turns; and the
    Milvus server to and from FAISS, Parquet and Qdrant Edge."""
    n = len(EMBEDDED)
    ring = {(EMBEDDED[i], EMBEDDED[(i + 1) % n], ID_KINDS[i % len(ID_KINDS)]) for i in range(n)} if n > 1 else set()
    if "milvus-server" in ENGINES:
        for i, other in enumerate(e for e in ("faiss", "parquet", "qdrant-edge") if e in ENGINES):
            ring |= {(other, "milvus-server", ID_KINDS[i % 3]), ("milvus-server", other, ID_KINDS[(i + 1) % 3])}
    return ring


FAST = _ring_pairs()
CASES = [
    pytest.param(src, dst, kind, id=f"{src}->{dst}-{kind}",
                 marks=() if (src, dst, kind) in FAST else (pytest.mark.slow,))
    for kind in ID_KINDS for src in ENGINES for dst in ENGINES
]


def uri_for(engine: str, root, name: str, server=None) -> str:
    if engine == "milvus-server":
        return server.uri(f"matrix_{name}")
    return {
        "faiss": f"faiss:{root}/{name}.faiss",
        "parquet": f"parquet:{root}/{name}",
        # one Milvus Lite file and one Qdrant folder for all collections: each Lite file is a server process
        "milvus": f"milvus:{root}/matrix.db#{name}",
        "qdrant": f"qdrant:{root}/qdrant#{name}",
        "qdrant-edge": f"qdrant-edge:{root}/edge#{name}",
    }[engine]


@pytest.fixture(scope="module")
def data(real_vectors, real_texts):
    vectors = real_vectors(N)
    texts = real_texts(N)
    ids = {
        # negative, small and near-int64-limit ints: Qdrant maps the negative ones to UUIDs
        "int": [int(i * 1_000_003 - 2_000_000_000) for i in range(N - 2)] + [2**62 + 5, -(2**62) - 5],
        "str": [t["id"] for t in texts],
        "uuid": [str(uuid.uuid5(uuid.NAMESPACE_URL, t["id"])) for t in texts],
    }
    for kind, values in ids.items():
        assert len(set(values)) == N, f"{kind} ids are not unique"
    payloads = mixed_payloads(N, seed=5, texts=[t["text"] for t in texts])
    for row, p in enumerate(payloads):
        p["row"] = row
    return {"vectors": vectors, "ids": ids, "payloads": payloads}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture
def server_if(request):
    """server_if(*engines) -> the session's Milvus server when one of the engines is it (else None)."""
    return lambda *engines: request.getfixturevalue("milvus_server") if "milvus-server" in engines else None


@pytest.fixture(scope="module")
def sources(data, root):
    """(engine, id kind, server) -> URI of a filled source store, built once per module."""
    built: dict = {}

    def get(engine: str, kind: str, server=None) -> str:
        if (engine, kind) not in built:
            uri = uri_for(engine, root, f"src_{engine.replace('-', '_')}_{kind}", server)
            with open_store(uri) as store:
                store.create(data["vectors"].shape[1], "ip", id_type="int" if kind == "int" else "str")
                from connectors.base import Batch
                for start in range(0, N, BATCH):
                    sl = slice(start, start + BATCH)
                    store.upsert(Batch(data["ids"][kind][sl], data["vectors"][sl], data["payloads"][sl]))
                store.flush()
            built[(engine, kind)] = uri
        return built[(engine, kind)]

    return get


def copy_store(src_uri: str, dst_uri: str) -> None:
    with open_store(src_uri) as src, open_store(dst_uri) as dst:
        dst.create(src.dim, src.metric, id_type=src.id_type)
        for batch in src.iter_batches(BATCH):
            dst.upsert(batch)
        dst.flush()


def read_all(uri: str):
    with open_store(uri) as store:
        ids, vectors, payloads = [], [], []
        for b in store.iter_batches(BATCH):
            ids += b.ids
            vectors.append(b.vectors)
            payloads += b.payloads if b.payloads is not None else [None] * len(b)
        return ids, np.concatenate(vectors), payloads, store.count()


def _same_payload(got: dict, want: dict, float_ulps: int) -> bool:
    if got.keys() != want.keys():
        return False
    for k, w in want.items():
        g = got[k]
        if type(g) is not type(w):
            return False
        if isinstance(w, float) and float_ulps:
            if not math.isclose(g, w, rel_tol=float_ulps * 2.3e-16, abs_tol=0.0):
                return False
        elif g != w:
            return False
    return True


@pytest.mark.parametrize("src_engine,dst_engine,kind", CASES)
def test_copy_keeps_ids_vectors_payloads(src_engine, dst_engine, kind, data, sources, root, server_if):
    server = server_if(src_engine, dst_engine)
    src_uri = sources(src_engine, kind, server)
    dst_uri = uri_for(dst_engine, root, f"dst_{src_engine}_{dst_engine}_{kind}".replace("-", "_"), server)
    copy_store(src_uri, dst_uri)

    ids, vectors, payloads, count = read_all(dst_uri)
    row_of = {x: i for i, x in enumerate(data["ids"][kind])}
    assert count == N and len(ids) == N
    assert sorted(map(repr, ids)) == sorted(map(repr, data["ids"][kind]))  # same values and types
    rows = np.array([row_of[x] for x in ids])
    assert np.array_equal(vectors, data["vectors"][rows]), "vectors changed in the copy"
    # qdrant-edge-py parses payload floats with serde_json's fast path: up to 1 ulp off (see report)
    ulps = 1 if "qdrant-edge" in (src_engine, dst_engine) else 0
    bad = [x for x, p in zip(ids, payloads) if not _same_payload(p, data["payloads"][row_of[x]], ulps)]
    assert not bad, f"{len(bad)} payloads differ, e.g. id {bad[0]!r}"

    # Idempotent: copying again leaves one row per id.
    copy_store(src_uri, dst_uri)
    ids_again, _, _, count_again = read_all(dst_uri)
    assert count_again == N and len(set(map(repr, ids_again))) == N == len(ids_again)

    with open_store(dst_uri) as dst:
        first, again, other = dst.sample(500, seed=11), dst.sample(500, seed=11), dst.sample(500, seed=12)
    assert first.ids == again.ids and np.array_equal(first.vectors, again.vectors)
    assert first.ids != other.ids
    sampled_rows = np.array([row_of[x] for x in first.ids])
    assert np.array_equal(first.vectors, data["vectors"][sampled_rows])
    # Uniform over 5,000 rows: mean 2,500 +- 65 (1 sd), both ends reached; a prefix-biased sampler fails.
    assert 2100 < sampled_rows.mean() < 2900
    assert sampled_rows.min() < 250 and sampled_rows.max() > N - 250
