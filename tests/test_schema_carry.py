"""Schema and index carried over when apply creates the destination, and the other vectors copied unchanged.

Milvus Lite: an HNSW index, VARCHAR(64) fields, a partition key, a second dense vector, a sparse vector and a
scalar index. Qdrant Edge: named dense vectors with their own HNSW settings, a sparse vector with the IDF
modifier, payload indexes, collection HNSW and optimizer settings. FAISS: IVF (retrained) and HNSW. Every
check reads the destination with the engine's own API, not with the connector under test. The other vectors
are real too: l3-model embeddings of the same texts, and word-count sparse vectors of the texts.
"""
from __future__ import annotations

import json
import zlib
from collections import Counter

import numpy as np
import pytest

from _workflow_helpers import fit_translator, need_data, payloads_for, rows_of, run_cli, write_store
from connectors.schema import carry
from v2v_migrate import load_translator

N = 400


def words_sparse(text: str) -> dict:
    """A real sparse vector of a text: word counts at crc32(word) % 2^20."""
    counts = Counter(zlib.crc32(w.lower().encode()) % (1 << 20) for w in text.split())
    keys = sorted(counts)
    return {"indices": keys, "values": [float(counts[k]) for k in keys]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import shared_data

    need_data()
    root = tmp_path_factory.mktemp("carry")
    rows = rows_of("A", 0, N)
    pays = payloads_for(rows)
    return {"root": root, "translator": fit_translator(root / "translator"), "rows": rows,
            "minilm": shared_data.embeddings("minilm", rows), "l3": shared_data.embeddings("l3", rows),
            "sparse": [words_sparse(p["text"]) for p in pays], "texts": [p["text"] for p in pays],
            "target": write_store(f"faiss:{root / 'target.faiss'}", rows_of("B", 0, 2000), model="e5")}


def _apply(world, source, dest, tmp_path, *extra):
    res = run_cli(["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest,
                   "--state-dir", str(tmp_path / "state"), "--json", *extra], tmp_path)
    return res, (json.loads(res.stdout) if res.returncode == 0 else None)


@pytest.fixture(scope="module")
def milvus_source(world):
    from pymilvus import DataType, MilvusClient

    db = world["root"] / "src.db"
    client = MilvusClient(str(db))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    schema.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("emb_l3", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("words", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    index.add_index("emb", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 64})
    index.add_index("emb_l3", index_type="FLAT", metric_type="L2")
    index.add_index("words", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    index.add_index("title", index_type="INVERTED")
    client.create_collection("docs", schema=schema, index_params=index)
    client.insert("docs", [{"doc_id": f"doc-{int(r)}", "title": world["texts"][i][:60], "tenant": f"t{int(r) % 3}",
                            "emb": world["minilm"][i], "emb_l3": world["l3"][i], "row": int(r),
                            "words": dict(zip(world["sparse"][i]["indices"], world["sparse"][i]["values"]))}
                           for i, r in enumerate(world["rows"])])
    _close_lite(client, db)
    return f"milvus:{db}#docs"


def _close_lite(client, db) -> None:
    """Close a Milvus Lite client and release the file, so that the CLI's process can open it."""
    from milvus_lite.server_manager import server_manager_instance

    client.close()
    server_manager_instance.release_server(str(db))


def test_milvus_schema_second_and_sparse_vectors_migrate_intact(world, milvus_source, tmp_path):
    from pymilvus import MilvusClient

    dest = f"milvus:{tmp_path / 'dest.db'}#docs"
    plan = run_cli(["plan", "--source", milvus_source, "--source-option", "vector_field=emb", "--target",
                    world["target"], "--dest", dest, "--out", str(tmp_path / "plan.toml")], tmp_path)
    assert plan.returncode == 0, plan.stderr
    for words in ("vector 'emb_l3' (dense, 384-d", "vector 'words' (sparse", "title varchar(max_length 64)",
                  "partition key 'tenant'", "index hnsw", "payload indexes title (keyword)"):
        assert words in plan.stdout, words
    res, out = _apply(world, milvus_source, dest, tmp_path, "--source-option", "vector_field=emb")
    assert res.returncode == 0, res.stderr
    assert out["dest_count"] == N and "vector 'words' (sparse, copied unchanged)" in out["schema_carried"]

    client = MilvusClient(str(tmp_path / "dest.db"))
    fields = {f["name"]: f for f in client.describe_collection("docs")["fields"]}
    assert fields["doc_id"]["params"]["max_length"] == 64 and fields["title"]["params"]["max_length"] == 64
    assert fields["tenant"].get("is_partition_key") and fields["emb_l3"]["params"]["dim"] == 384
    assert fields["words"]["type"].name == "SPARSE_FLOAT_VECTOR"
    kinds = {i["field_name"]: (i["index_type"], i["metric_type"])
             for i in (client.describe_index("docs", n) for n in client.list_indexes("docs"))}
    assert kinds == {"emb": ("HNSW", "COSINE"), "emb_l3": ("FLAT", "L2"), "words": ("SPARSE_INVERTED_INDEX", "IP"),
                     "title": ("INVERTED", "NONE")}
    client.load_collection("docs")
    got = {r["doc_id"]: r for r in client.query("docs", filter="", limit=N + 10,
                                                output_fields=["doc_id", "title", "tenant", "row", "emb", "emb_l3",
                                                               "words"])}
    _close_lite(client, tmp_path / "dest.db")
    assert len(got) == N
    translated = load_translator(str(world["translator"]))(world["minilm"])
    for i, r in enumerate(world["rows"]):
        row = got[f"doc-{int(r)}"]
        assert (row["title"], row["tenant"], row["row"]) == (world["texts"][i][:60], f"t{int(r) % 3}", int(r))
        assert np.array_equal(np.asarray(row["emb_l3"], np.float32), world["l3"][i])  # copied bit for bit
        assert row["words"] == dict(zip(world["sparse"][i]["indices"], np.float32(world["sparse"][i]["values"])))
        assert np.allclose(np.asarray(row["emb"], np.float32), translated[i], atol=1e-5)

    # The report compares both schemas, picking the migrated vector among the destination's three.
    report = run_cli(["report", "--translator", str(world["translator"]), "--source", milvus_source,
                      "--source-option", "vector_field=emb", "--dest", dest, "--out", str(tmp_path / "report"),
                      "--sample-size", "200", "--json"], tmp_path)
    assert report.returncode == 0, report.stderr
    schema = json.loads(report.stdout)["integrity"]["schema"]
    assert schema["compared"] and schema["differences"] == [] and set(schema["dest"]["vectors"]) == {"emb", "emb_l3", "words"}


def test_vectors_a_destination_cannot_hold_are_refused_unless_dropped(world, milvus_source, tmp_path):
    dest = f"faiss:{tmp_path / 'dest.faiss'}"
    res, _ = _apply(world, milvus_source, dest, tmp_path, "--source-option", "vector_field=emb")
    assert res.returncode == 2 and "--drop-vector emb_l3 --drop-vector words" in res.stderr
    assert not (tmp_path / "dest.faiss").exists()  # refused before anything was written
    res, out = _apply(world, milvus_source, dest, tmp_path, "--source-option", "vector_field=emb",
                      "--drop-vector", "emb_l3", "--drop-vector", "words")
    assert res.returncode == 0, res.stderr
    assert out["dest_count"] == N and out["selection"] == {"drop_vectors": ["emb_l3", "words"]}
    assert "vector 'words': dropped (--drop-vector)" in out["schema_not_carried"]
    typo, _ = _apply(world, milvus_source, f"faiss:{tmp_path / 'other.faiss'}", tmp_path, "--source-option",
                     "vector_field=emb", "--drop-vector", "emb_l4", "--drop-vector", "emb_l3", "--drop-vector", "words")
    assert typo.returncode == 2 and "emb_l4" in typo.stderr


def test_qdrant_edge_named_sparse_payload_indexes_and_settings_migrate_intact(world, tmp_path):
    import qdrant_edge as q

    src_dir = tmp_path / "edge"
    config = q.EdgeConfig(
        vectors={"minilm": q.EdgeVectorParams(size=384, distance=q.Distance.Cosine, hnsw_config=q.HnswIndexConfig(
                     m=8, ef_construct=64, full_scan_threshold=2000)),
                 "l3": q.EdgeVectorParams(size=384, distance=q.Distance.Dot)},
        sparse_vectors={"words": q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        hnsw_config=q.HnswIndexConfig(m=20, ef_construct=128, full_scan_threshold=5000),
        optimizers=q.EdgeOptimizersConfig(deleted_threshold=0.3, indexing_threshold=5000))
    shard = q.EdgeShard.create(str(src_dir / "docs"), config)
    shard.update(q.UpdateOperation.create_field_index("tenant", q.PayloadSchemaType.Keyword))
    shard.update(q.UpdateOperation.create_field_index("row", q.PayloadSchemaType.Integer))
    shard.update(q.UpdateOperation.upsert_points([
        q.Point(int(r), {"minilm": world["minilm"][i].tolist(), "l3": world["l3"][i].tolist(),
                         "words": q.SparseVector(world["sparse"][i]["indices"], world["sparse"][i]["values"])},
                {"tenant": f"t{int(r) % 3}", "row": int(r)}) for i, r in enumerate(world["rows"])]))
    shard.flush()
    shard.close()
    dest_dir = tmp_path / "out"
    res, out = _apply(world, f"qdrant-edge:{src_dir}#docs", f"qdrant-edge:{dest_dir}#docs", tmp_path,
                      "--source-option", "vector_name=minilm")
    assert res.returncode == 0, res.stderr
    assert out["dest_count"] == N and not out["schema_not_carried"]

    saved = json.loads((dest_dir / "docs" / "edge_config.json").read_text())  # what the engine persisted
    assert saved["vectors"]["minilm"]["size"] == 384 and saved["vectors"]["minilm"]["distance"] == "Cosine"
    assert (saved["vectors"]["minilm"]["hnsw_config"]["m"], saved["vectors"]["minilm"]["hnsw_config"]["ef_construct"]) == (8, 64)
    assert saved["vectors"]["l3"]["distance"] == "Dot" and saved["sparse_vectors"]["words"]["modifier"] == "idf"
    assert (saved["hnsw_config"]["m"], saved["hnsw_config"]["ef_construct"]) == (20, 128)
    assert (saved["optimizers"]["indexing_threshold"], saved["optimizers"]["deleted_threshold"]) == (5000, 0.3)
    dest = q.EdgeShard.load(str(dest_dir / "docs"))
    indexes = {k: str(v.data_type) for k, v in dest.info().payload_schema.items()}
    assert indexes == {"tenant": "PayloadSchemaType.Keyword", "row": "PayloadSchemaType.Integer"}
    records, _ = dest.scroll(q.ScrollRequest(limit=N + 10, with_vector=True, with_payload=True))
    dest.close()
    translated = load_translator(str(world["translator"]))(world["minilm"])
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == sorted(int(r) for r in world["rows"])
    for i, r in enumerate(world["rows"]):
        rec = by_id[int(r)]
        assert rec.payload == {"tenant": f"t{int(r) % 3}", "row": int(r)}
        assert np.array_equal(np.asarray(rec.vector["l3"], np.float32), world["l3"][i])
        assert (list(rec.vector["words"].indices), list(rec.vector["words"].values)) == (
            world["sparse"][i]["indices"], world["sparse"][i]["values"])
        unit = translated[i] / np.linalg.norm(translated[i])
        assert np.allclose(np.asarray(rec.vector["minilm"], np.float32), unit, atol=1e-5)


@pytest.mark.parametrize("options,expected", [
    ({"index": "ivf", "nlist": 16, "nprobe": 4}, ("IndexIVFFlat", 16, 4)),
    ({"index": "hnsw", "hnsw_m": 12, "ef_construction": 50}, ("IndexIDMap2", 12, 50)),
])
def test_faiss_index_type_and_parameters_are_carried(world, tmp_path, options, expected):
    import faiss

    from connectors import open_store
    from connectors.base import Batch

    with open_store(f"faiss:{tmp_path / 'src.faiss'}", **options) as src:
        src.create(384, "ip")
        src.upsert(Batch([int(r) for r in world["rows"]], world["minilm"]))
    res, out = _apply(world, f"faiss:{tmp_path / 'src.faiss'}", f"faiss:{tmp_path / 'dst.faiss'}", tmp_path)
    assert res.returncode == 0, res.stderr
    index = faiss.read_index(str(tmp_path / "dst.faiss"))  # kept alive while downcast views are used
    assert type(faiss.downcast_index(index)).__name__ == expected[0] and index.ntotal == N
    if expected[0] == "IndexIVFFlat":
        ivf = faiss.downcast_index(index)
        assert (ivf.nlist, ivf.nprobe) == expected[1:]
        # Retrained on the translated vectors: its lists fit them better than the source index's lists do.
        rows = _ivf_rows(ivf)
        source_index = faiss.read_index(str(tmp_path / "src.faiss"))  # kept: the downcast view does not own it
        assert _quantization_error(ivf, rows) < 0.8 * _quantization_error(faiss.downcast_index(source_index), rows)
    else:
        hnsw = faiss.downcast_index(faiss.downcast_index(index).index)
        assert (hnsw.hnsw.nb_neighbors(1), hnsw.hnsw.efConstruction) == expected[1:]


def _ivf_rows(ivf) -> np.ndarray:
    """Every vector stored in an IVFFlat index (its codes are the float32 vectors)."""
    import faiss

    parts = []
    for lst in range(ivf.nlist):
        size = ivf.invlists.list_size(lst)
        if size:
            codes = faiss.rev_swig_ptr(ivf.invlists.get_codes(lst), size * ivf.d * 4)
            parts.append(codes.view(np.float32).reshape(size, ivf.d).copy())
    return np.concatenate(parts)


def _quantization_error(ivf, rows: np.ndarray) -> float:
    """Mean squared distance of the rows to their nearest list centroid."""
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    d2 = ((rows[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return float(d2.min(axis=1).mean())


def test_carry_maps_what_each_engine_can_hold():
    milvus = {"engine": "milvus", "vector": "emb", "vectors": {
        "emb": {"kind": "dense", "dim": 384, "metric": "cosine", "index": {"type": "hnsw", "m": 8, "ef_construction": 64}},
        "img": {"kind": "dense", "dim": 512, "metric": "l2", "index": {"type": "ivf_flat", "nlist": 64}},
        "words": {"kind": "sparse", "index": {"type": "sparse_inverted_index", "params": {}}}},
        "id": {"name": "doc_id", "type": "str", "max_length": 64}, "fields": {"title": {"type": "varchar", "max_length": 64}},
        "dynamic": True, "partition_key": "tenant", "num_partitions": 16, "payload_indexes": {"title": "keyword"}}
    same = carry(milvus, "milvus", dim=768, metric="ip")
    assert same["schema"]["vectors"]["emb"] == {"kind": "dense", "dim": 768, "metric": "ip",
                                                "index": {"type": "hnsw", "m": 8, "ef_construction": 64}}
    assert same["schema"]["vectors"]["img"]["index"] == {"type": "ivf_flat", "nlist": 64}
    assert same["schema"]["partition_key"] == "tenant" and same["schema"]["id"]["max_length"] == 64
    assert same["unholdable"] == [] and same["not_carried"] == []
    qdrant = carry(milvus, "qdrant-edge", dim=768, metric="ip")
    assert qdrant["schema"]["payload_indexes"] == {"title": "keyword", "tenant": "keyword"}
    assert qdrant["schema"]["vectors"]["img"]["index"] == {} and "fields" not in qdrant["schema"]
    assert any("ivf_flat" in x for x in qdrant["not_carried"])
    faiss_out = carry(milvus, "faiss", dim=768, metric="ip", drop_vectors=["words"])
    assert faiss_out["unholdable"] == ["img"] and faiss_out["schema"]["vector"] == ""
    assert faiss_out["schema"]["vectors"][""]["index"] == {"type": "hnsw", "m": 8, "ef_construction": 64}
    local = carry({**milvus, "engine": "qdrant-edge", "engine_config": {"hnsw": {"m": 20}}}, "qdrant-local",
                  dim=768, metric="ip", drop_vectors=["img", "words"])
    assert "engine_config" not in local["schema"] and "payload_indexes" not in local["schema"]


def test_incremental_copies_a_row_whose_other_vector_changed(world, tmp_path):
    import qdrant_edge as q

    src = tmp_path / "edge"
    shard = q.EdgeShard.create(str(src / "docs"), q.EdgeConfig(
        vectors={"minilm": q.EdgeVectorParams(size=384, distance=q.Distance.Cosine)},
        sparse_vectors={"words": q.EdgeSparseVectorParams()}))

    def put(i, words):
        shard.update(q.UpdateOperation.upsert_points([q.Point(
            i, {"minilm": world["minilm"][i].tolist(), "words": q.SparseVector(words["indices"], words["values"])},
            {"row": i})]))

    for i in range(200):
        put(i, world["sparse"][i])
    shard.flush()
    shard.close()
    args = ("--source-option", "vector_name=minilm", "--incremental")
    res, out = _apply(world, f"qdrant-edge:{src}#docs", f"qdrant-edge:{tmp_path}/out#docs", tmp_path, *args)
    assert res.returncode == 0 and out["rows_written"] == 200, res.stderr
    shard = q.EdgeShard.load(str(src / "docs"))
    put(7, {"indices": [1, 2], "values": [3.0, 4.0]})  # only the sparse vector of row 7 changes
    shard.flush()
    shard.close()
    res, out = _apply(world, f"qdrant-edge:{src}#docs", f"qdrant-edge:{tmp_path}/out#docs", tmp_path, *args)
    assert res.returncode == 0 and (out["rows_written"], out["rows_skipped"]) == (1, 199), res.stderr
    dest = q.EdgeShard.load(str(tmp_path / "out" / "docs"))
    (record,) = dest.retrieve([7], with_payload=False, with_vector=["words"])
    dest.close()
    assert (list(record.vector["words"].indices), list(record.vector["words"].values)) == ([1, 2], [3.0, 4.0])
