"""The four strategies (status quo, query bridge, migrate, re-embed): the rule that picks one, on hand-built
inputs; the figures on hand-built vectors whose answers are known; and, on real data, a query bridge trained
with `train --direction new-to-old` (mpnet 768-d old model, all-MiniLM-L6-v2 384-d new model through the
lookup encoder) whose search results on the old index, through FAISS's and Milvus Lite's own search, match
a brute-force numpy search with the bridge applied to the queries; then `report --bridge` compares all four."""
from __future__ import annotations

import json

import numpy as np
import pytest

import shared_data
from _workflow_helpers import brute_overlap as _brute_overlap
from _workflow_helpers import need_data, rows_of, write_store
from v2v_migrate import strategies as st
from v2v_migrate.cli import main

ENC = "python:_lookup_encoder:minilm"


def _fig(sq, bridge, migrate):
    return {"status_quo": {"retention": sq}, "bridge": {"retention": bridge}, "migrate": {"retention": migrate},
            "reembed": {"retention": 1.0}}


def _costs(reembed_seconds):
    return {"reembed": {"seconds": reembed_seconds}}


@pytest.mark.parametrize("figures, reembed_s, expected, words", [
    (_fig(0.30, 0.40, 0.45), 1800.0, "reembed", "within 60 min"),        # affordable: the ceiling
    (_fig(0.30, 0.40, 0.45), None, "migrate", "re-embed time is unknown"),
    (_fig(0.30, 0.445, 0.45), 7200.0, "bridge", "within 0.01"),           # a tie: zero writes win
    (_fig(0.30, 0.35, 0.45), 7200.0, "migrate", "migrate keeps 0.450"),
    (_fig(0.30, None, 0.45), 7200.0, "migrate", "no bridge measured"),
    (_fig(0.30, 0.33, 0.29), 7200.0, "bridge", "migrate falls below"),
    (_fig(0.30, 0.20, 0.25), 7200.0, "status_quo", "below the status quo"),
    (_fig(None, None, None), 7200.0, "migrate", "not measured yet"),
])
def test_the_rule_on_hand_built_figures(figures, reembed_s, expected, words):
    got = st.recommend(figures, _costs(reembed_s))
    assert got["strategy"] == expected
    assert words in " ".join(got["reasons"])


def test_projected_costs_follow_the_slowest_stage():
    rates = {"read": 10_000.0, "translate": 50_000.0, "bridge": 20_000.0, "encode": 100.0, "write": 5_000.0}
    c = st.project_costs(1_000_000, rates, text_share=0.5)
    assert c["status_quo"]["writes"] == c["bridge"]["writes"] == 0
    assert c["migrate"] == {"writes": 1_000_000, "seconds": 200.0, "limited_by": "write", "unknown": [],
                            "query_ms": 0.0}
    assert c["reembed"]["writes"] == 500_000 and c["reembed"]["seconds"] == 5_000.0
    assert c["reembed"]["limited_by"] == "encode" and c["reembed"]["rows_without_text"] == 500_000
    assert c["bridge"]["query_ms"] == pytest.approx(0.05)
    no_encoder = st.project_costs(1000, dict(rates, encode=None))
    assert no_encoder["reembed"]["unknown"] == ["encode"] and no_encoder["reembed"]["limited_by"] == "write"


def test_figures_on_vectors_with_known_answers():
    """Old and new model identical, translator and bridge the identity: every strategy finds the truth.
    An unrelated old model finds about what chance gives (10 of 400 candidates)."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal((400, 16)).astype(np.float32)
    q = np.arange(0, 400, 4)
    same = st.compare(y, y, y, y, q)
    for s in st.STRATEGIES:
        assert same[s]["retention"] == pytest.approx(1.0) and same[s]["known_item_top1"] == pytest.approx(1.0)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    other = st.compare(x, y, x, None, q)
    assert other["status_quo"]["retention"] < 0.15 and other["migrate"]["retention"] < 0.15
    assert other["migrate"]["known_item_top1"] < 0.05
    assert other["bridge"]["measured"] is False and other["bridge"]["retention"] is None
    mix = st.mixed_retention(y, x, q, shares=(0.0, 0.5, 1.0))
    assert mix[0]["retention"] == pytest.approx(other["migrate"]["retention"])
    assert mix[1]["retention"] > mix[0]["retention"] and mix[2]["retention"] == pytest.approx(1.0)


# ---- real data: the bridge ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("strategies")
    rows = rows_of("test", 0, 3000)  # mpnet covers rows 0-19,999, as does the test split
    source = write_store(f"faiss:{root / 'old.faiss'}", rows, model="mpnet")
    base = ["--source", source, "--encoder", ENC, "--encoded-pairs", "1500", "--method", "ridge", "--json"]
    for d, out in (("old-to-new", "T"), ("new-to-old", "B")):
        assert main(["train", *base, "--direction", d, "--out", str(root / out)]) == 0
    return {"root": root, "rows": rows, "source": source}


def _brute_top(queries, docs, k=10) -> list[list[int]]:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    return [list(np.argsort(-row, kind="stable")[:k]) for row in q.astype(np.float64) @ d.T.astype(np.float64)]


def test_the_bridge_is_a_normal_translator_directory_that_records_its_direction(world):
    from v2v_migrate import load_translator

    cfg = json.loads((world["root"] / "B" / "config.json").read_text())
    assert cfg["workflow"]["direction"] == "new-to-old"
    assert json.loads((world["root"] / "T" / "config.json").read_text())["workflow"]["direction"] == "old-to-new"
    bridge = load_translator(str(world["root"] / "B"))
    assert (bridge.source_dim, bridge.target_dim) == (384, 768)  # new model in, old model out


def test_bridge_search_on_the_old_index_matches_brute_force(world, tmp_path):
    """New-model queries of texts the bridge never saw, bridged, searched through each engine's own API."""
    from connectors import open_store
    from v2v_migrate import load_translator
    from v2v_migrate.pairs import held_out

    rows = world["rows"]
    held = rows[held_out([int(r) for r in rows])][:60]
    queries = load_translator(str(world["root"] / "B"))(shared_data.embeddings("minilm", held))
    old = shared_data.embeddings("mpnet", rows)
    truth = [[int(rows[i]) for i in t] for t in _brute_top(queries, old)]
    milvus = write_store(f"milvus:{tmp_path / 'old.db'}#docs", rows, model="mpnet", payloads=False)
    for uri in (world["source"], milvus):
        with open_store(uri) as s:
            found, _ = s.search(queries, 10)
        overlap = np.mean([len(set(map(int, f)) & set(t)) / 10 for f, t in zip(found, truth)])
        assert overlap >= (1.0 if uri.startswith("faiss") else 0.95), uri  # FAISS Flat is exact
    # and it is a bridge: each bridged query finds its own text's old vector first
    own = np.mean([int(rows[t[0]]) == int(r) for t, r in zip(_brute_top(queries, old), held)])
    assert own >= 0.8


def test_report_compares_the_four_strategies(world, capsys):
    root = world["root"]
    code = main(["report", "--translator", str(root / "T"), "--bridge", str(root / "B"), "--source",
                 world["source"], "--encoder", ENC, "--held-out", "300", "--out", str(root / "R"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    s = r["strategies"]
    f = s["figures"]
    assert set(f) == set(st.STRATEGIES) and all(f[k]["retention"] is not None for k in f)
    assert f["migrate"]["retention"] == pytest.approx(r["quality"]["retention"], abs=1e-9)
    assert f["status_quo"]["retention"] == pytest.approx(r["quality"]["status_quo"], abs=1e-9)
    assert f["bridge"]["retention"] > f["status_quo"]["retention"] and f["bridge"]["known_item_top1"] > 0.8
    assert s["rates"]["encode"] > 0 and s["rates"]["bridge"] > 0 and s["rates"]["write"] > 0
    assert s["costs"]["migrate"]["writes"] == 3000 and s["costs"]["bridge"]["writes"] == 0
    curve = [m["retention"] for m in s["progressive"]]  # 0, 25, 50, 75, 100 % re-embedded
    assert [m["share"] for m in s["progressive"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(a < b for a, b in zip(curve, curve[1:]))
    # nothing re-embedded is migrate (another code path: overlap_at_k), everything is the truth
    assert curve[0] == pytest.approx(f["migrate"]["retention"], abs=1e-9) and curve[-1] == pytest.approx(1.0)
    assert s["recommendation"]["strategy"] in st.STRATEGIES
    page = (root / "R" / "report.html").read_text()
    assert "<h2>Strategies</h2>" in page and "Retention as re-embedding progresses" in page


def test_a_bridge_is_refused_where_the_translator_belongs_and_vice_versa(world, capsys):
    root = world["root"]
    code = main(["report", "--translator", str(root / "B"), "--source", world["source"], "--out",
                 str(root / "R2")])
    assert code == 2 and "query bridge" in capsys.readouterr().err
    code = main(["report", "--translator", str(root / "T"), "--bridge", str(root / "T"), "--source",
                 world["source"], "--out", str(root / "R3")])
    assert code == 2 and "not a query bridge" in capsys.readouterr().err
    code = main(["apply", "--translator", str(root / "B"), "--source", world["source"], "--dest",
                 f"faiss:{root / 'never.faiss'}"])
    assert code == 2 and "query bridge" in capsys.readouterr().err
    assert not (root / "never.faiss").exists()


def test_plan_train_bridge_report_then_plan_recommends_from_the_report(world, tmp_path, capsys):
    """The plan names a bridge_dir; `train --plan --direction new-to-old` writes the bridge there; `report --plan`
    finds it; `plan --report` takes the measured retention and projects the costs to the source's size."""
    plan, dest = str(tmp_path / "plan.toml"), f"faiss:{tmp_path / 'new.faiss'}"
    assert main(["plan", "--source", world["source"], "--encoder", ENC, "--dest", dest, "--out", plan]) == 0
    capsys.readouterr()
    for d in ("old-to-new", "new-to-old"):
        assert main(["train", "--plan", plan, "--method", "ridge", "--encoded-pairs", "1500", "--direction", d]) == 0
    assert json.loads((tmp_path / "bridge" / "config.json").read_text())["workflow"]["direction"] == "new-to-old"
    capsys.readouterr()
    assert main(["report", "--plan", plan, "--held-out", "300", "--out", str(tmp_path / "R"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["strategies"]["figures"]
    assert figures["bridge"]["measured"] and figures["bridge"]["retention"] > figures["status_quo"]["retention"]
    assert main(["plan", "--source", world["source"], "--encoder", ENC, "--dest", dest, "--out", plan,
                 "--report", str(tmp_path / "R" / "report.json"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["strategy"]
    assert s["retention"] == {k: figures[k]["retention"] for k in st.STRATEGIES}
    assert s["costs"]["migrate"]["writes"] == s["costs"]["reembed"]["writes"] == 3000
    assert s["rates"]["encode"] > 0 and s["rates"]["write"] > 0
    # 3,000 rows with the (fast) lookup encoder: a full re-embed takes seconds, so it is the choice
    assert s["recommendation"]["strategy"] == "reembed"
    code = main(["plan", "--source", world["source"], "--encoder", ENC, "--dest", dest, "--out", plan,
                 "--report", str(tmp_path / "plan.toml")])
    assert code == 2 and "report" in capsys.readouterr().err


def test_bridge_retention_matches_a_brute_force_count(world, tmp_path, capsys):
    """A pairs file of 200 texts outside the source store (never trained on): every row is a query; the bridge's
    retention and known-item top-1 recomputed one query at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from v2v_migrate import load_translator

    rows = rows_of("test", 3000, 200)
    x, y = shared_data.embeddings("mpnet", rows), shared_data.embeddings("minilm", rows)
    path = tmp_path / "held.parquet"
    pq.write_table(pa.table({"source": list(x), "target": list(y)}), path)
    root = world["root"]
    assert main(["report", "--translator", str(root / "T"), "--bridge", str(root / "B"), "--source",
                 world["source"], "--pairs", str(path), "--out", str(tmp_path / "R"), "--json"]) == 0
    f = json.loads(capsys.readouterr().out)["strategies"]["figures"]
    b = load_translator(str(root / "B"))(y)
    assert f["bridge"]["retention"] == pytest.approx(_brute_overlap(y, y, b, x).mean(), abs=1e-9)
    own_first = np.mean([np.argmax(x @ (q / np.linalg.norm(q))) == i for i, q in enumerate(b)])
    assert f["bridge"]["known_item_top1"] == pytest.approx(own_first, abs=1e-9)
