"""Each destination engine answers queries through its own search API (`store.search(queries, k)`), as the
migrated index will serve them; report's ANN recall uses it. Checked against brute-force numpy top-10 on
real embeddings, with string ids restored to the user's ids. Parquet has no search engine and says so."""
from __future__ import annotations

import numpy as np
import pytest

from _workflow_helpers import need_data
import shared_data
from connectors import Batch, open_store
from v2v_migrate.report_integrity import ann_recall

N, Q, K = 2000, 40, 10


@pytest.fixture(scope="module")
def vectors():
    need_data()
    v = shared_data.embeddings("minilm", np.arange(N + Q))
    return v[:N], v[N:]  # documents, and queries that are not documents


def _brute(docs, queries, k=K) -> list[set]:
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return [set(np.argsort(-row)[:k].tolist()) for row in q @ d.T]


@pytest.mark.parametrize("scheme, uri, string_ids, min_recall", [
    ("faiss-flat", "faiss:{d}/flat.faiss", False, 1.0),      # exact: every top-10 identical
    ("faiss-flat-str", "faiss:{d}/str.faiss", True, 1.0),
    ("faiss-hnsw", "faiss:{d}/hnsw.faiss?index=hnsw", False, 0.9),
    ("milvus-lite", "milvus:{d}/m.db#docs", True, 0.9),
    ("qdrant-local", "qdrant:{d}/q#docs", True, 0.9),
    ("qdrant-edge", "qdrant-edge:{d}/e#docs", False, 0.9),
])
def test_search_matches_brute_force(vectors, tmp_path, scheme, uri, string_ids, min_recall):
    if scheme == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
    docs, queries = vectors
    ids = [f"doc-{i}" for i in range(N)] if string_ids else list(range(N))
    uri = uri.format(d=tmp_path)
    with open_store(uri) as s:
        s.create(docs.shape[1], "cosine", id_type="str" if string_ids else "int", exist_ok=True)
        s.upsert(Batch(ids, docs, [{"i": i} for i in range(N)]))
        s.flush()
    with open_store(uri) as s:
        found, scores = s.search(queries, K)
    truth = [{ids[i] for i in t} for t in _brute(docs, queries)]
    assert len(found) == Q and all(len(f) == K for f in found)
    assert all(isinstance(x, str if string_ids else int) for f in found for x in f)
    recall = np.mean([len(set(f) & t) / K for f, t in zip(found, truth)])
    assert recall >= min_recall
    assert all(np.all(np.diff(np.asarray(sc, float)) <= 1e-6) for sc in scores)  # best first
    # each score is the hit's cosine similarity to the query (sign and scale included), computed here by hand
    row_of = {x: i for i, x in enumerate(ids)}
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for j, (f, sc) in enumerate(zip(found, scores)):
        want = d[[row_of[x] for x in f]] @ q[j]
        np.testing.assert_allclose(np.asarray(sc, float), want, atol=2e-3)


def test_ann_recall_uses_the_engine_and_parquet_says_it_has_none(vectors, tmp_path):
    docs, queries = vectors
    for uri in (f"faiss:{tmp_path}/f.faiss", f"parquet:{tmp_path}/p"):
        with open_store(uri) as s:
            s.create(docs.shape[1], "cosine", id_type="int", exist_ok=True)
            s.upsert(Batch(list(range(N)), docs, None))
            s.flush()
    with open_store(f"faiss:{tmp_path}/f.faiss") as s:
        r = ann_recall(s, queries, k=K)
    assert r["measured"] and r["recall"] == 1.0 and r["queries"] == Q  # a Flat index is exact
    with open_store(f"parquet:{tmp_path}/p") as s:
        r = ann_recall(s, queries, k=K)
    assert not r["measured"] and "no search engine" in r["reason"]
