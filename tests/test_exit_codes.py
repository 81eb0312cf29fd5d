"""Exit codes 4 (destination locked) and 1 (unexpected error) through the real CLI, as README promises:
4 with the holder's pid when another process writes the destination, and 1 with one line (a traceback only
with V2V_DEBUG=1) when something that is not a user mistake fails."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from _workflow_helpers import cli_env, fit_translator, need_data, rows_of, run_cli, write_store

HOLDER = """
import sys
from v2v_migrate.locking import DestinationLock
lock = DestinationLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()   # hold the lock until the test closes our stdin
lock.release()
"""


def _tree(root) -> dict:
    """{relative path: bytes} of every file under root (what a command wrote)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("exit_codes")
    return {"translator": fit_translator(root / "translator"),
            "source": write_store(f"faiss:{root / 'src.faiss'}", rows_of("A", 0, 200))}


def test_exit_4_while_another_process_holds_the_destination(world, tmp_path):
    locks, work = tmp_path / "locks", tmp_path / "work"
    work.mkdir()
    dest = f"milvus:{work / 'dst.db'}#docs"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, dest], env=cli_env(V2V_LOCK_DIR=str(locks)),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # the holder reports it holds the lock
        args = ["apply", "--translator", str(world["translator"]), "--source", world["source"], "--dest", dest,
                "--state-dir", str(work / "state"), "--json"]
        res = run_cli(args, work, V2V_LOCK_DIR=str(locks))
        assert res.returncode == 4, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0]
        assert f"pid {holder.pid}" in lines[0] and "Traceback" not in res.stderr
        assert _tree(work) == {}, "a locked apply wrote something"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    res = run_cli(args, work, V2V_LOCK_DIR=str(locks))  # the holder is gone: its lock went with it
    assert res.returncode == 0, res.stderr


def test_exit_1_on_an_unexpected_error_and_the_traceback_only_with_debug(world, tmp_path):
    # A user's python: encoder that fails in a way no connector or encoder check knows: a bug, exit 1.
    (tmp_path / "failing_encoder.py").write_text(
        "def encode(texts):\n    raise ZeroDivisionError('encoder bug 4711')\n")
    args = ["plan", "--source", world["source"], "--encoder", "python:failing_encoder:encode",
            "--dest", f"faiss:{tmp_path / 'dst.faiss'}", "--out", str(tmp_path / "plan.toml")]
    res = run_cli(args, tmp_path)
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("error: unexpected ZeroDivisionError: encoder bug 4711")
    assert "V2V_DEBUG=1" in lines[0]
    assert not (tmp_path / "plan.toml").exists() and not (tmp_path / "dst.faiss").exists()
    debug = run_cli(args, tmp_path, V2V_DEBUG="1")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "failing_encoder.py" in debug.stderr
