"""plan and train on real stores: what the plan says, what it refuses, and that train/apply accept it."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from _workflow_helpers import need_data, read_all, rows_of, write_store
import shared_data
from v2v_migrate.cli import main
from connectors.errors import (
    DestinationNotEmptyError, DimensionMismatchError, EmptyStoreError, UnknownSchemeError,
)
from translators.errors import TrainingError
from v2v_migrate.plan import make_plan, read_plan, summary_text, write_plan
from v2v_migrate.pairs import read_pairs
from v2v_migrate.training import train_translator


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("plan")
    return {
        "root": root,
        "source": write_store(f"faiss:{root / 'src.faiss'}", rows_of("A", 0, 1500)),
        # Target: other texts, new model (unpaired).
        "target": write_store(f"faiss:{root / 'tgt.faiss'}", rows_of("B", 0, 1500), model="e5", payloads=False),
        # Target holding the same ids (same texts) as the source: pairs by id.
        "paired_target": write_store(f"faiss:{root / 'tgt_same.faiss'}", rows_of("A", 0, 1500), model="e5",
                                     payloads=False),
    }


def test_plan_describes_both_stores_and_round_trips_through_toml(stores, tmp_path):
    plan = make_plan(stores["source"], stores["target"], f"milvus:{tmp_path / 'new.db'}#docs",
                     dest_options={"api_key": "SECRET-VALUE", "index_type": "FLAT"})
    s, t, d = plan["source"], plan["target"], plan["dest"]
    assert (s["count"], s["dim"], s["metric"], s["id_type"]) == (1500, 384, "cosine", "int")
    assert sorted(s["payload_fields"]) == ["row", "tags", "text"]
    # Real sentence-encoder vectors: unit length, but not centred (they share a cone).
    assert s["unit_length"] and not s["centred"] and t["unit_length"]
    assert d["action"] == "create" and d["dim"] == 384 and d["metric"] == "cosine"
    assert plan["train"]["pairs_from"] == "none" and plan["train"]["method"] == "auto"
    assert plan["train"]["sample_size"] == 1500
    e = plan["estimate"]
    assert e["read_rate"] > 0 and e["dest_disk_bytes"] > 1500 * 384 * 4 and e["apply_memory_bytes"] > 0
    path = write_plan(plan, tmp_path / "plan.toml")
    text = path.read_text()
    assert "SECRET-VALUE" not in text and "api_key" not in text and 'index_type = "FLAT"' in text
    assert tomllib.loads(text) == read_plan(path) and read_plan(path)["source"]["uri"] == s["uri"]
    lines = summary_text(plan).splitlines()
    assert len(lines) <= 12 and any("method auto" in x for x in lines)


def test_plan_finds_pairs_by_id_and_train_then_apply_accept_the_plan(stores, tmp_path, capsys):
    plan_path = tmp_path / "plan.toml"
    dest = f"faiss:{tmp_path / 'dest.faiss'}"
    assert main(["plan", "--source", stores["source"], "--target", stores["paired_target"], "--dest", dest,
                 "--out", str(plan_path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # 1,500 shared ids, of which train fits on the ~80 % outside the held-out part (report measures the rest)
    assert plan["train"]["pairs_from"] == "ids" and plan["train"]["pairs"] == 1200
    assert plan["train"]["method"] == "auto"  # ~1,200 pairs: anchors for auto (ridge from SUPERVISED_PAIRS on)

    assert main(["train", "--plan", str(plan_path), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["method"] == "auto" and trained["pairs_from"] == "ids in both stores"
    assert 0.75 * 1500 < trained["pairs"] < 0.85 * 1500
    cfg = json.loads((tmp_path / "translator" / "config.json").read_text())
    assert cfg["workflow"]["source_uri"] == plan["source"]["uri"] and cfg["workflow"]["source_sample"] == 1500

    assert main(["apply", "--plan", str(plan_path), "--state-dir", str(tmp_path / "st"), "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["completed"] and applied["dest_count"] == 1500
    # Held-out quality of the trained translator: translated test rows vs the true e5 vectors.
    from v2v_migrate import load_translator

    test_rows = rows_of("test", 0, 500)
    pred = load_translator(str(tmp_path / "translator"))(shared_data.embeddings("minilm", test_rows))
    truth = shared_data.embeddings("e5", test_rows)
    cos = (pred * truth).sum(1) / np.linalg.norm(pred, axis=1)
    assert cos.mean() > 0.6
    ids, _, _ = read_all(dest)
    assert sorted(ids) == [int(r) for r in rows_of("A", 0, 1500)]


def test_method_choice_follows_the_number_of_known_pairs():
    from v2v_migrate.training import choose_method

    # docs/results.md, "Known pairs": `auto` anchored by them below 3,000 pairs, `ridge` from 3,000 on
    assert choose_method(0)[0] == "auto" and "--pairs" in choose_method(0)[1] and "--encoder" in choose_method(0)[1]
    assert choose_method(1)[0] == "auto" and "under 3,000" in choose_method(1)[1]
    assert choose_method(2999)[0] == "auto"
    assert choose_method(3000)[0] == "ridge" and choose_method(50_000)[0] == "ridge"


def test_train_with_a_pairs_file(stores, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_of("B", 2000, 1200)
    x, y = shared_data.embeddings("minilm", rows), shared_data.embeddings("e5", rows)
    pq.write_table(pa.table({"source": list(x), "target": list(y)}), tmp_path / "pairs.parquet")
    pairs = read_pairs(tmp_path / "pairs.parquet", 384, 384)
    assert pairs.x.shape == (1200, 384) and np.allclose(pairs.y, y) and pairs.ids is None
    out = train_translator(stores["source"], stores["target"], tmp_path / "tr", pairs_path=tmp_path / "pairs.parquet")
    assert out["pairs_from"] == "file pairs.parquet" and out["method"] == "auto"
    assert 0.75 * 1200 < out["pairs"] < 0.85 * 1200  # the file's held-out rows are kept for report
    assert (tmp_path / "tr" / "model.safetensors").exists()


def test_impossible_plans_are_refused_with_the_fix(stores, tmp_path):
    from connectors import open_store

    empty = f"faiss:{tmp_path / 'empty.faiss'}"
    with open_store(empty) as s:
        s.create(384, "cosine")
    tiny = write_store(f"faiss:{tmp_path / 'tiny.faiss'}", rows_of("B", 0, 100), model="e5", payloads=False)
    wide = write_store(f"faiss:{tmp_path / 'wide.faiss'}", rows_of("test", 0, 20), model="mpnet", payloads=False)
    taken = write_store(f"faiss:{tmp_path / 'taken.faiss'}", rows_of("B", 0, 20), model="e5", payloads=False)
    new = f"faiss:{tmp_path / 'new.faiss'}"
    cases = [
        ((empty, stores["target"], new), {}, EmptyStoreError, "no vectors"),
        ((stores["source"], tiny, new), {}, TrainingError, "--pairs"),
        ((stores["source"], stores["target"], wide), {}, DimensionMismatchError, "768"),
        ((stores["source"], stores["target"], taken), {}, DestinationNotEmptyError, "--allow-existing"),
        (("nosuch:x", stores["target"], new), {}, UnknownSchemeError, "faiss:"),
    ]
    for args, kw, err, fix_words in cases:
        with pytest.raises(err) as e:
            make_plan(*args, state_dir=tmp_path / "st", **kw)
        assert e.value.fix and fix_words in str(e.value)
    ok = make_plan(stores["source"], stores["target"], taken, allow_existing=True, state_dir=tmp_path / "st")
    assert ok["dest"]["action"] == "write into the existing destination" and ok["dest"]["count"] == 20
    assert not (tmp_path / "new.faiss").exists()


@pytest.mark.slow  # the unsupervised fit takes minutes on 2 CPU cores
def test_train_without_pairs_uses_the_unsupervised_method(stores, tmp_path, capsys):
    plan_path = tmp_path / "plan.toml"
    assert main(["plan", "--source", stores["source"], "--target", stores["target"],
                 "--dest", f"faiss:{tmp_path / 'd.faiss'}", "--out", str(plan_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["pairs_from"] == "none"
    assert main(["train", "--plan", str(plan_path), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["method"] == "auto" and trained["pairs"] == 0 and trained["source_sample"] == 1500
    cfg = json.loads((tmp_path / "translator" / "config.json").read_text())
    assert cfg["workflow"]["pairs_from"] == "none" and cfg["source_dim"] == 384


def test_health_summary_warns_on_a_map_that_looks_failed():
    from v2v_migrate.training import FAILED_MAP_CONSISTENCY, HEALTH_MIN_ROWS, health_summary

    big = {"source": HEALTH_MIN_ROWS, "target": 3000}
    assert health_summary({}) == (None, None)
    assert health_summary({"health": {"score": 0.2}}) == (None, None)  # vec2vec's health has other figures
    line, warning = health_summary({"health": {"neighbour_consistency": 0.149, "mnn_mean_cosine": 0.41, "sample": big}})
    assert "0.149" in line and warning is None
    line, warning = health_summary({"health": {"neighbour_consistency": FAILED_MAP_CONSISTENCY - 0.04, "sample": big}})
    assert "--pairs" in warning and "0.060" in warning
    # the same figure on a small sample gives no verdict (consistency rises when samples are small)
    line, warning = health_summary({"health": {"neighbour_consistency": 0.06, "sample": {"source": 500, "target": 500}}})
    assert warning is None and "too few" in line
