"""Qdrant local mode and Qdrant Edge connectors: ids, cosine, named vectors, cursor, slices, errors, credentials."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from connectors import Batch, open_store
from connectors.credentials import Secret, load_credentials, redact
from connectors.errors import (
    CredentialsError, DimensionMismatchError, EmptyStoreError, InvalidVectorsError, MetricMismatchError,
    StoreLockedError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)

N = 300
ENGINES = ["qdrant", "qdrant-edge"]
# ids Qdrant cannot hold as they are (negative, > 2^64-1, non-UUID text, upper-case UUID) next to ones it can
ODD_IDS = [0, 2**64 - 1, -1, 2**64, "plain text id", "6F9619FF-8B86-D011-B42D-00C04FC964FF",
           "6f9619ff-8b86-d011-b42d-00c04fc964ff", 42]


@pytest.fixture(scope="module")
def vectors(real_vectors):
    return real_vectors(N)


def _uri(engine, root, name):
    return f"{engine}:{root}/{engine}#{name}"


@pytest.mark.parametrize("engine", ENGINES)
def test_odd_ids_round_trip_with_payloads(engine, tmp_path, vectors):
    store = open_store(_uri(engine, tmp_path, "ids"))
    store.create(384, "ip")
    payloads = [{"row": i, "big": 2**70 + i, "tags": ["a"]} for i in range(len(ODD_IDS))]
    store.upsert(Batch(ODD_IDS, vectors[:len(ODD_IDS)], payloads))
    store.upsert(Batch(ODD_IDS, vectors[:len(ODD_IDS)], payloads))  # idempotent
    store.flush()
    b = list(store.iter_batches(100))[0]
    assert store.count() == len(ODD_IDS) and sorted(map(repr, b.ids)) == sorted(map(repr, ODD_IDS))
    for x, v, p in zip(b.ids, b.vectors, b.payloads):
        i = ODD_IDS.index(x)
        assert np.array_equal(v, vectors[i]) and p == payloads[i]
    got = store.get(["plain text id", -1, 2**64, "absent"])
    assert sorted(map(repr, got.ids)) == sorted(map(repr, ["plain text id", -1, 2**64]))
    store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_cursor_resume_slices_and_sample(engine, tmp_path, vectors):
    store = open_store(_uri(engine, tmp_path, "c"))
    store.create(384, "l2")
    store.upsert(Batch(list(range(N)), vectors, [{"row": i} for i in range(N)]))
    store.flush()
    batches = list(store.iter_batches(64))
    assert [len(b) for b in batches] == [64, 64, 64, 64, 44] and batches[-1].cursor == {"end": True}
    assert [x for b in store.iter_batches(64, cursor=batches[2].cursor) for x in b.ids] == list(range(192, N))
    assert list(store.iter_batches(64, cursor=batches[-1].cursor)) == []
    parts = [[x for b in store.iter_batches(50, shard=s) for x in b.ids] for s in store.shards(3)]
    assert sorted(sum(parts, [])) == list(range(N)) and all(40 < len(p) < 160 for p in parts)
    a, b = store.sample(60, seed=4), store.sample(60, seed=4)
    assert a.ids == b.ids and np.array_equal(a.vectors, vectors[a.ids]) and max(a.ids) > N - 60
    store.close()


def test_cosine_local_mode_renormalises_edge_keeps_unit_rows(tmp_path, vectors):
    unit = (vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True))
    unit = unit.astype(np.float32)
    back = {}
    for engine in ENGINES:
        store = open_store(_uri(engine, tmp_path, "cos"))
        store.create(384, "cosine")
        store.upsert(Batch(list(range(N)), unit))
        back[engine] = np.concatenate([b.vectors for b in store.iter_batches(1000)])
        store.close()
    assert np.array_equal(back["qdrant-edge"], unit)  # Edge leaves unit-length vectors alone
    # Local mode divides every vector by its float32 norm: within 1 ulp, not always bit-identical.
    assert np.abs(back["qdrant"] - unit).max() <= 1.5e-8


def test_named_vectors_and_manhattan(tmp_path, vectors):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "raw"))
    client.create_collection("named", vectors_config={
        "title": models.VectorParams(size=384, distance=models.Distance.DOT),
        "body": models.VectorParams(size=8, distance=models.Distance.EUCLID)})
    client.upsert("named", points=[models.PointStruct(id=i, vector={"title": vectors[i].tolist(), "body": [1.0] * 8},
                                                      payload={"i": i}) for i in range(5)])
    client.create_collection("manhattan", vectors_config=models.VectorParams(size=4,
                                                                              distance=models.Distance.MANHATTAN))
    client.close()
    with pytest.raises(StoreUsageError, match="body, title"):
        open_store(f"qdrant:{tmp_path}/raw#named").dim
    store = open_store(f"qdrant:{tmp_path}/raw#named", vector_name="title")
    assert (store.dim, store.metric) == (384, "ip")
    b = list(store.iter_batches(10))[0]
    assert b.ids == list(range(5)) and np.array_equal(b.vectors, vectors[:5]) and b.payloads[2] == {"i": 2}
    with pytest.raises(UnreadableStoreError, match="Manhattan"):
        open_store(f"qdrant:{tmp_path}/raw#manhattan").metric
    store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_errors_name_the_fix(engine, tmp_path, vectors):
    store = open_store(_uri(engine, tmp_path, "errs"))
    store.create(384, "ip")
    store.upsert(Batch([1, 2], vectors[:2]))
    with pytest.raises(StoreNotFoundError, match="errs"):  # lists the existing collections
        open_store(_uri(engine, tmp_path, "nope")).count()
    with pytest.raises(StoreNotFoundError):
        open_store(f"{engine}:{tmp_path}/absent#x").count()
    with pytest.raises(StoreUsageError, match="collection"):
        open_store(f"{engine}:{tmp_path}/x")
    with pytest.raises(DimensionMismatchError):
        store.upsert(Batch([3], np.zeros((1, 8), np.float32)))
    with pytest.raises(DimensionMismatchError):
        store.create(8, "ip")
    with pytest.raises(MetricMismatchError):
        store.create(384, "cosine")
    bad = vectors[:2].copy()
    bad[0, 0] = np.inf
    with pytest.raises(InvalidVectorsError):
        store.upsert(Batch([5, 6], bad))
    with pytest.raises(StoreUsageError, match="bytes"):
        store.upsert(Batch([7], vectors[:1], [{"blob": b"\x00"}]))
    assert store.count() == 2
    empty = open_store(_uri(engine, tmp_path, "empty"))
    empty.create(384, "ip")
    with pytest.raises(EmptyStoreError):
        empty.sample(3)
    store.close()
    empty.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_folder_open_in_another_process_is_locked(engine, tmp_path, vectors):
    uri = _uri(engine, tmp_path, "lock")
    store = open_store(uri)
    store.create(384, "ip")
    store.upsert(Batch([1], vectors[:1]))
    store.close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from connectors import open_store
        s = open_store("{uri}"); s.count()
        print("ready", flush=True); sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="another process"):
            open_store(uri).count()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with open_store(uri) as reopened:  # free again once the other process is gone
        assert reopened.count() == 1


# -- server URIs and credentials (no server here: parsing, refusal, redaction, and a refused connection) ---
def test_credentials_never_from_uri_and_never_shown(tmp_path, monkeypatch):
    for uri in ["qdrant:https://user:Sup3rSecret@q.example:6333#docs",
                "qdrant:https://q.example:6333/?api_key=Sup3rSecret#docs"]:
        with pytest.raises(CredentialsError) as e:
            open_store(uri)
        assert "Sup3rSecret" not in str(e.value) and "QDRANT_API_KEY" in str(e.value)
    monkeypatch.setenv("QDRANT_API_KEY", "Sup3rSecret")
    store = open_store("qdrant:https://q.example:6333#docs")
    assert store._server.tls and store._server.url == "https://q.example:6333"
    assert "Sup3rSecret" not in repr(store) + store.uri + repr(store._creds) + f"{store._creds['api_key']}"
    assert store._creds["api_key"].reveal() == "Sup3rSecret"


def test_credentials_files_json_toml_env(tmp_path):
    (tmp_path / "c.json").write_text('{"api_key": "k-json-1"}')
    (tmp_path / "c.toml").write_text('QDRANT_API_KEY = "k-toml-2"\n')
    (tmp_path / "c.env").write_text("# comment\nexport QDRANT_API_KEY='k-env-3'\n")
    (tmp_path / "m.env").write_text("MILVUS_USER=root\nMILVUS_PASSWORD=pw-4\n")
    (tmp_path / "bad.json").write_text('{"api_key": "k-bad-5"')
    assert load_credentials("qdrant", str(tmp_path / "c.json"))["api_key"].reveal() == "k-json-1"
    assert load_credentials("qdrant", str(tmp_path / "c.toml"))["api_key"].reveal() == "k-toml-2"
    assert load_credentials("qdrant", str(tmp_path / "c.env"))["api_key"].reveal() == "k-env-3"
    m = load_credentials("milvus", str(tmp_path / "m.env"))
    assert (m["user"].reveal(), m["password"].reveal()) == ("root", "pw-4")
    with pytest.raises(CredentialsError) as e:
        load_credentials("qdrant", str(tmp_path / "bad.json"))
    assert "k-bad-5" not in str(e.value)  # the parser's message could quote the secret
    with pytest.raises(CredentialsError, match="api_key"):
        load_credentials("qdrant", str(tmp_path / "m.env"))
    with pytest.raises(CredentialsError, match="does not exist"):
        load_credentials("qdrant", str(tmp_path / "missing.json"))
    assert load_credentials("qdrant", environ={}) == {}
    assert redact("auth root:pw-4 failed for pw-4", m) == "auth *** failed for ***"
    assert repr(Secret("abc")) == "Secret(***)"


def test_refused_server_connection_is_typed_and_redacted(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "Sup3rSecret")
    store = open_store("qdrant:http://127.0.0.1:9#docs", timeout=2)  # port 9: nothing listens
    with pytest.raises(UnreadableStoreError, match="QDRANT_API_KEY") as e:
        store.count()
    assert "Sup3rSecret" not in str(e.value)
