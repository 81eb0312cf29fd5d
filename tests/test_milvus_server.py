"""A real Milvus 2.3.5 server (tests/servers.py): schema carried over by apply, partitions, partition-key
routing, kill -9 and resume, authorization, and transient errors (the server stopped and restarted).

The server holds one vector field per collection and no sparse vectors (Milvus 2.4 added both): the
second-vector and sparse cases run on Milvus Lite in test_schema_carry.py.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from _workflow_helpers import (
    assert_exact_copy, fit_translator, need_data, payloads_for, rows_of, run_cli, start_cli, wait_for_progress,
    write_store,
)
from connectors import open_store
from connectors.errors import TransientStoreError
from v2v_migrate.checkpoint import state_dir_for

pytest.importorskip("pymilvus")
N = 600


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("server")
    return {"root": root, "translator": fit_translator(root / "translator"), "rows": rows_of("A", 0, N)}


def _source_collection(server, name: str, rows, partition_key: bool = True) -> str:
    """A collection as users make them: VARCHAR(64) key and title, a partition key (or named partitions),
    an HNSW index with M=8/efConstruction=64, a Trie index on the title, real minilm vectors."""
    import shared_data
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=server.url, token=f"{server.user}:{server.password}" if server.auth else "")
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    schema.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=partition_key)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=384)
    index = client.prepare_index_params()
    index.add_index("emb", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 64})
    index.add_index("title", index_type="Trie")
    client.create_collection(name, schema=schema, index_params=index, **({"num_partitions": 4} if partition_key else {}))
    vectors = shared_data.embeddings("minilm", rows)
    data = [{"doc_id": f"doc-{int(r)}", "title": p["text"][:60], "tenant": f"t{int(r) % 3}", "emb": vectors[i],
             "row": int(r)} for i, (r, p) in enumerate(zip(rows, payloads_for(rows)))]
    if partition_key:
        client.insert(name, data)
    else:  # named partitions: a third of the rows each
        for t in ("t0", "t1", "t2"):
            client.create_partition(name, f"part_{t}")
            client.insert(name, [d for d in data if d["tenant"] == t], partition_name=f"part_{t}")
    client.flush(name)
    client.close()
    return server.uri(name)


def _apply(world, source, dest, state, *extra, cwd):
    return run_cli(["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest,
                    "--state-dir", str(state), "--json", *extra], cwd)


def test_schema_and_partition_key_carried_and_filters_find_every_row(world, milvus_server, tmp_path):
    from pymilvus import MilvusClient

    source = _source_collection(milvus_server, "carry_src", world["rows"])
    plan = run_cli(["plan", "--source", source, "--target", source, "--dest", milvus_server.uri("carry_dst"),
                    "--out", str(tmp_path / "plan.toml")], tmp_path)
    assert plan.returncode == 0, plan.stderr
    for words in ("index hnsw (m=8, ef_construction=64)", "title varchar(max_length 64)", "partition key 'tenant'"):
        assert words in plan.stdout
    res = _apply(world, source, milvus_server.uri("carry_dst"), tmp_path / "state", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["dest_count"] == N

    client = MilvusClient(uri=milvus_server.url)  # read back with the engine's own client, not ours
    fields = {f["name"]: f for f in client.describe_collection("carry_dst")["fields"]}
    assert fields["doc_id"]["is_primary"] and fields["doc_id"]["params"]["max_length"] == 64
    assert fields["title"]["params"]["max_length"] == 64 and fields["tenant"].get("is_partition_key")
    indexes = {i["field_name"]: i for i in (client.describe_index("carry_dst", n) for n in client.list_indexes("carry_dst"))}
    assert (indexes["emb"]["index_type"], int(indexes["emb"]["M"]), int(indexes["emb"]["efConstruction"])) == ("HNSW", 8, 64)
    assert indexes["emb"]["metric_type"] == "COSINE" and indexes["title"]["index_type"] == "Trie"
    # Milvus 2.3 routes upserts by primary key, not partition key; a filter on the key would then miss rows.
    for t in ("t0", "t1", "t2"):
        want = {f"doc-{int(r)}" for r in world["rows"] if f"t{int(r) % 3}" == t}
        got = client.query("carry_dst", filter=f'tenant == "{t}"', output_fields=["doc_id"], limit=N)
        assert {g["doc_id"] for g in got} == want
    client.close()


def test_named_partitions_are_carried_row_by_row(world, milvus_server, tmp_path):
    from pymilvus import MilvusClient

    source = _source_collection(milvus_server, "parts_src", world["rows"][:300], partition_key=False)
    res = _apply(world, source, milvus_server.uri("parts_dst"), tmp_path / "state", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    client = MilvusClient(uri=milvus_server.url)
    assert sorted(client.list_partitions("parts_dst")) == ["_default", "part_t0", "part_t1", "part_t2"]
    for t in ("t0", "t1", "t2"):
        got = client.query("parts_dst", filter="", output_fields=["tenant"], limit=1000, partition_names=[f"part_{t}"])
        assert len(got) == sum(1 for r in world["rows"][:300] if int(r) % 3 == int(t[1])) and {g["tenant"] for g in got} == {t}
    assert not client.query("parts_dst", filter="", output_fields=["doc_id"], limit=10, partition_names=["_default"])
    # --partition picks partitions of the source
    res = _apply(world, source, milvus_server.uri("parts_one"), tmp_path / "state2", "--partition", "part_t1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["dest_count"] == sum(1 for r in world["rows"][:300] if int(r) % 3 == 1)
    assert out["selection"] == {"partitions": ["part_t1"]}
    client.close()


def test_kill9_mid_run_then_resume_into_the_server(world, milvus_server, tmp_path):
    source = write_store(f"faiss:{tmp_path / 'src.faiss'}", rows_of("A", 0, 2000))
    dest, state = milvus_server.uri("kill9_dst"), tmp_path / "state"
    args = ["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest, "--batch-size",
            "100", "--state-dir", str(state), "--checkpoint-seconds", "0", "--max-rate", "100", "--json"]
    # --max-rate keeps the run going for 20 s: a server's flush (and so each commit) takes long enough that
    # commits are spaced seconds apart, and the first one comes after the first batch.
    proc = start_cli(args, tmp_path)
    cp = wait_for_progress(state_dir_for(dest, state), 100, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert not cp["completed"]
    done = run_cli(args[:-3] + ["--json"], tmp_path)  # the same apply, without the rate limit
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resumed"] and out["dest_count"] == 2000
    assert_exact_copy(source, dest, world["translator"])


def test_authorization_from_the_environment_and_a_wrong_password(world, milvus_server_auth, tmp_path):
    source = write_store(f"faiss:{tmp_path / 'src.faiss'}", rows_of("A", 0, 200))
    dest = milvus_server_auth.uri("auth_dst")
    args = ["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest,
            "--state-dir", str(tmp_path / "state"), "--json"]
    wrong = run_cli(args, tmp_path, MILVUS_USER="root", MILVUS_PASSWORD="Wr0ngPassw0rd!")
    assert wrong.returncode == 3, wrong.stderr
    line = wrong.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: ") and "Fix:" in line
    assert "auth" in line.lower() and "Wr0ngPassw0rd!" not in wrong.stderr + wrong.stdout
    ok = run_cli(args, tmp_path, **milvus_server_auth.credentials_env())
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["dest_count"] == 200
    checkpoint = (state_dir_for(dest, tmp_path / "state") / "checkpoint.json").read_text()
    assert milvus_server_auth.password not in checkpoint and "root:" not in checkpoint


def test_transient_errors_are_retried_then_reported(milvus_server, real_vectors):
    from connectors.base import Batch

    uri = milvus_server.uri("transient")
    with open_store(uri) as store:
        store.create(384, "ip")
        store.upsert(Batch(list(range(50)), real_vectors(50)))
        store.flush()
    milvus_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(TransientStoreError, match="failed 3 time") as e:
            open_store(uri, retries=3, retry_delay=0.1).count()
        assert "Fix:" in str(e.value) and time.monotonic() - started < 60  # bounded, not pymilvus' minutes
        # A store that keeps trying recovers once the server is back (no sleep: wait for its first retry).
        store, result = open_store(uri, retries=100, retry_delay=0.5), []
        worker = threading.Thread(target=lambda: result.append(store.count()))
        worker.start()
        deadline = time.monotonic() + 60
        while store.retrier.retried == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.retrier.retried >= 1
    finally:
        milvus_server.start()
    worker.join(timeout=120)
    assert result == [50]
    store.close()


def test_lite_collection_to_the_server_rebuilds_its_scalar_index_in_the_servers_kind(world, milvus_server, tmp_path):
    import shared_data
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import DataType, MilvusClient

    lite = MilvusClient(str(tmp_path / "src.db"))
    schema = lite.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("doc_id", DataType.INT64, is_primary=True)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=384)
    index = lite.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="IP")
    index.add_index("title", index_type="INVERTED")  # Milvus 2.3 has no INVERTED index: Trie there
    lite.create_collection("docs", schema=schema, index_params=index)
    rows = world["rows"][:100]
    vectors = shared_data.embeddings("minilm", rows)
    lite.insert("docs", [{"doc_id": int(r), "title": f"title {int(r)}", "emb": vectors[i]} for i, r in enumerate(rows)])
    lite.close()
    server_manager_instance.release_server(str(tmp_path / "src.db"))
    res = _apply(world, f"milvus:{tmp_path / 'src.db'}#docs", milvus_server.uri("from_lite"), tmp_path / "state",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    client = MilvusClient(uri=milvus_server.url)
    kinds = {i["field_name"]: i["index_type"] for i in (client.describe_index("from_lite", n)
                                                         for n in client.list_indexes("from_lite"))}
    assert kinds == {"emb": "FLAT", "title": "Trie"}
    assert {f["name"]: f for f in client.describe_collection("from_lite")["fields"]}["title"]["params"]["max_length"] == 64
    client.close()
