"""The CLI: every command has --help; success paths print JSON with --json; every bad input exits non-zero with
ONE line `error: ... Fix: ...` on stderr and no traceback (in-process for speed, plus real subprocesses)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from _workflow_helpers import cli_env, console_script, fit_translator, need_data, rows_of, write_store
import shared_data
from v2v_migrate.cli import main

COMMANDS = ["plan", "train", "apply", "report", "status", "translate", "evaluate", "demo"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    import faiss

    root = tmp_path_factory.mktemp("cli")
    w = {"root": root, "translator": fit_translator(root / "translator")}
    w["source"] = write_store(f"faiss:{root / 'source.faiss'}", rows_of("A", 0, 600))
    w["target"] = write_store(f"faiss:{root / 'target.faiss'}", rows_of("B", 0, 600), model="e5", payloads=False)
    w["mpnet"] = write_store(f"faiss:{root / 'mpnet.faiss'}", rows_of("test", 0, 300), model="mpnet",
                             payloads=False)
    w["tiny_target"] = write_store(f"faiss:{root / 'tiny.faiss'}", rows_of("B", 0, 40), model="e5",
                                   payloads=False)
    w["foreign"] = write_store(f"faiss:{root / 'foreign.faiss'}", rows_of("B", 0, 20), model="e5",
                               payloads=False)
    w["milvus"] = write_store(f"milvus:{root / 'm.db'}#docs", rows_of("A", 0, 50))
    empty = f"faiss:{root / 'empty.faiss'}"
    from connectors import open_store

    with open_store(empty) as s:
        s.create(384, "cosine")
    w["empty"] = empty
    x = shared_data.embeddings("minilm", rows_of("A", 0, 500))
    # A raw FAISS file written by someone else, with NaN rows.
    bad = x.copy()
    bad[7, :3] = np.nan
    nan_index = faiss.IndexIDMap2(faiss.IndexFlatIP(384))
    nan_index.add_with_ids(bad, np.arange(500, dtype=np.int64))
    faiss.write_index(nan_index, str(root / "nan.faiss"))
    # A lossy PQ index: its codes cannot give back the vectors.
    pq = faiss.index_factory(384, "PQ16x4")
    pq.train(x)
    pq.add(x)
    faiss.write_index(pq, str(root / "pq.faiss"))
    (root / "bad_plan.toml").write_text("this is = = not toml [")
    (root / "old_plan.toml").write_text('version = 1\n[source]\nuri = "faiss:x"\n')
    (root / "not_a_translator").mkdir()
    np.save(root / "x.npy", x[:100])
    np.save(root / "y.npy", shared_data.embeddings("e5", rows_of("A", 0, 99)))
    return w


def _cases(w):
    r, t = w["root"], str(w["translator"])
    dest = f"faiss:{r / 'never.faiss'}"

    def apply(src, dst=dest, *extra):
        return ["apply", "--translator", t, "--source", src, "--dest", dst, "--state-dir", str(r / "st"), *extra]

    return {
        "unknown scheme": (apply("mongo:/x"), 2, "Unknown store URI"),
        "missing file": (apply(f"faiss:{r / 'nope.faiss'}"), 3, "nope.faiss"),
        "missing collection": (apply(f"milvus:{r / 'm.db'}#nope"), 3, "nope"),
        "dim mismatch": (apply(w["mpnet"]), 2, "768"),
        # Found mid-stream (rows before it are written and checkpointed), so it gets its own destination.
        "NaN source": (apply(f"faiss:{r / 'nan.faiss'}", f"faiss:{r / 'nan_dest.faiss'}"), 2, "NaN"),
        "lossy PQ index": (apply(f"faiss:{r / 'pq.faiss'}"), 3, "PQ"),
        "empty source": (apply(w["empty"]), 3, "no vectors"),
        "foreign destination": (apply(w["source"], w["foreign"]), 5, "--allow-existing"),
        "source is dest": (apply(w["source"], w["source"]), 2, "same store"),
        "bad batch size": (apply(w["source"], dest, "--batch-size", "0"), 2, "batch"),
        "bad connector option": (apply(w["source"], dest, "--dest-option", "novalue"), 2, "KEY=VALUE"),
        "missing translator": (["apply", "--translator", str(r / "nope"), "--source", w["source"],
                                "--dest", dest], 2, "does not exist"),
        "not a translator": (["apply", "--translator", str(r / "not_a_translator"), "--source", w["source"],
                              "--dest", dest], 2, "config.json"),
        "bad plan file": (["apply", "--plan", str(r / "bad_plan.toml")], 2, "not valid TOML"),
        "incomplete plan file": (["train", "--plan", str(r / "old_plan.toml")], 2, "lacks"),
        "missing plan file": (["apply", "--plan", str(r / "nope.toml")], 2, "does not exist"),
        "apply without source": (["apply", "--translator", t], 2, "--source"),
        "unknown option": (["apply", "--frobnicate"], 2, "frobnicate"),
        "missing required option": (["plan", "--source", w["source"]], 2, "Missing option"),
        "unknown command": (["migrate"], 2, "No such command"),
        "plan: target too small": (["plan", "--source", w["source"], "--target", w["tiny_target"], "--dest", dest,
                                    "--out", str(r / "p.toml")], 2, "--pairs"),
        "plan: dest of another dim": (["plan", "--source", w["source"], "--target", w["target"],
                                       "--dest", w["mpnet"], "--out", str(r / "p.toml")], 2, "768"),
        "translate: missing input": (["translate", "--translator", t, "--input", str(r / "none.npy"),
                                      "--output", str(r / "y_out.npy")], 3, "does not exist"),
        "translate: not npy": (["translate", "--translator", t, "--input", str(r / "bad_plan.toml"),
                                "--output", str(r / "y_out.npy")], 3, ".npy"),
        "evaluate: row counts differ": (["evaluate", "--translator", t, "--source", str(r / "x.npy"),
                                         "--target", str(r / "y.npy")], 2, "rows"),
        "train: bad method": (["train", "--source", w["source"], "--target", w["target"],
                               "--out", str(r / "tr2"), "--method", "magic"], 2, "magic"),
    }


@pytest.mark.parametrize("case", [
    "unknown scheme", "missing file", "missing collection", "dim mismatch", "NaN source", "lossy PQ index",
    "empty source", "foreign destination", "source is dest", "bad batch size", "bad connector option",
    "missing translator", "not a translator", "bad plan file", "incomplete plan file", "missing plan file",
    "apply without source", "unknown option", "missing required option", "unknown command",
    "plan: target too small", "plan: dest of another dim", "translate: missing input", "translate: not npy",
    "evaluate: row counts differ", "train: bad method",
])
def test_error_paths_print_one_line_with_the_fix_and_no_traceback(world, capsys, case):
    argv, code, needle = _cases(world)[case]
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == code, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Fix:" in lines[0] and "Traceback" not in err
    assert needle in lines[0]
    assert not (world["root"] / "never.faiss").exists()  # a refused apply wrote nothing


def test_console_script_errors_without_traceback(world):
    """The real console script (what users type), not `python -m`: its wrapper calls main() and exits with
    main's code; PYTHONPATH puts this checkout first, so the script runs this code."""
    script = console_script()
    for argv, code, needle in [_cases(world)["NaN source"], _cases(world)["bad plan file"]]:
        res = subprocess.run([script, *argv], cwd=world["root"], env=cli_env(), capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == code and "Traceback" not in res.stderr
        assert res.stderr.strip().startswith("error: ") and needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_json(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "Usage" in out


def test_translate_and_evaluate_on_real_pairs(world, capsys, tmp_path):
    r, t = world["root"], str(world["translator"])
    np.save(tmp_path / "y.npy", shared_data.embeddings("e5", rows_of("A", 0, 100)))
    assert main(["translate", "--translator", t, "--input", str(r / "x.npy"), "--output",
                 str(tmp_path / "out.npy"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 100 and np.load(tmp_path / "out.npy").shape == (100, 384)
    assert main(["evaluate", "--translator", t, "--source", str(r / "x.npy"), "--target", str(tmp_path / "y.npy"),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # A supervised minilm->e5 map on held-out rows: far better than chance (top1 ~ 1/100).
    assert metrics["mean_cosine"] > 0.5 and metrics["top1"] > 0.3
