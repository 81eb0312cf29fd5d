"""Fault injection on real engines: apply killed (SIGKILL) at random points, including before its first
checkpoint and while it writes or flushes, then the same command run from ANOTHER folder (another cwd, and
another or no --state-dir): the destination ends with exactly the source's rows, no duplicates, vectors
equal to the translator's output, payloads intact. Two applies from two folders on one destination: the
second is refused. A destination marked by another migration is refused from any folder.

The run to kill is the real CLI with a translator that pauses after K batches (tests/_paused_apply.py): the
test waits for the pause the run reports, so the kill point is chosen by the seed, not by a clock.
Default run: one seed per engine; `slow`: 20 seeds per engine.
"""
from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from _workflow_helpers import DEST_ENGINES as ENGINES
from _workflow_helpers import (
    assert_exact_copy, fit_translator, need_data, rows_of, run_cli, start_paused, wait_paused, write_store,
)
from connectors import open_store

N, BATCH = 600, 50  # 12 batches


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("faults")
    return {"source": write_store(f"faiss:{root / 'source.faiss'}", rows_of("A", 0, N)),
            "translator": fit_translator(root / "translator"),
            "other_translator": fit_translator(root / "other_translator", seed=1)}


def apply_args(world, dest: str, *extra: str, translator: str = "translator") -> list[str]:
    return ["apply", "--translator", str(world[translator]), "--source", world["source"], "--dest", dest,
            "--batch-size", str(BATCH), "--json", *extra]


def kill_and_rerun_elsewhere(world, tmp_path: Path, kind: str, seed: int) -> dict:
    rng = random.Random(seed)
    pause_after = rng.randrange(0, N // BATCH)
    # 0: a flush + checkpoint after every batch, so the kill often lands in one; 1000: no checkpoint at all
    # before the kill (only the owner mark), the case a local checkpoint could not resume.
    commit = rng.choice(["0", "0", "1000"])
    release = rng.random() < 0.5  # let it run on and kill at once: wherever the writer then is
    dest, gate = ENGINES[kind](tmp_path), tmp_path / "gate"
    first = start_paused(apply_args(world, dest, "--checkpoint-seconds", commit), tmp_path / "first", gate,
                         pause_after)
    wait_paused(gate, first)
    if release:
        (gate / "go").touch()
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(timeout=60)
    # Another folder; half the seeds also name another state dir, the others use that folder's default.
    other = tmp_path / "second"
    other.mkdir()
    extra = ["--state-dir", str(tmp_path / "elsewhere-state")] if seed % 2 else []
    done = run_cli(apply_args(world, dest, *extra), other)
    assert done.returncode == 0, f"seed {seed} (pause {pause_after}, commit {commit}, release {release}): {done.stderr}"
    out = json.loads(done.stdout)
    assert out["completed"] and out["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])
    return out


# The default run: seed 3 kills after 3 batches were handed on, with no checkpoint yet (only the owner
# mark), and reruns with another state dir (the slow run's 20 seeds cover the other kinds of kill point).
@pytest.mark.parametrize("seed", [3])
@pytest.mark.parametrize("kind", list(ENGINES))
def test_kill9_then_rerun_from_another_folder(world, tmp_path, kind, seed):
    out = kill_and_rerun_elsewhere(world, tmp_path, kind, seed=seed)
    if seed == 3 and kind != "faiss":  # FAISS: no index file before the first flush, so it starts over
        assert out["resumed"]  # found the owner mark with the destination, though no checkpoint existed


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(ENGINES))
@pytest.mark.parametrize("seed", range(20))
def test_kill9_at_random_points_then_rerun_from_another_folder(world, tmp_path, kind, seed):
    kill_and_rerun_elsewhere(world, tmp_path, kind, seed=100 + seed)


def test_second_apply_from_another_folder_with_its_own_state_dir_is_refused(world, tmp_path):
    dest, gate = ENGINES["parquet"](tmp_path), tmp_path / "gate"
    first = start_paused(apply_args(world, dest, "--state-dir", str(tmp_path / "state-a")), tmp_path / "a", gate, 3)
    wait_paused(gate, first)
    (tmp_path / "b").mkdir()
    second = run_cli(apply_args(world, dest, "--state-dir", str(tmp_path / "state-b")), tmp_path / "b")
    assert second.returncode == 4, second.stderr
    assert str(first.pid) in second.stderr and "Fix:" in second.stderr
    (gate / "go").touch()
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])


def test_destination_of_another_migration_is_refused_from_any_folder(world, tmp_path):
    dest = ENGINES["milvus"](tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run_cli(apply_args(world, dest), tmp_path / "a").returncode == 0
    other = run_cli(apply_args(world, dest, translator="other_translator"), tmp_path / "b")
    assert other.returncode == 5, other.stderr
    assert "does not belong to this apply" in other.stderr and "kept with" in other.stderr
    again = run_cli(apply_args(world, dest), tmp_path / "b")  # the owner, from another folder: nothing to do
    assert again.returncode == 0 and json.loads(again.stdout)["already_complete"]


def test_ctrl_c_commits_and_exits_130_then_the_rerun_elsewhere_finishes(world, tmp_path):
    dest, gate = ENGINES["qdrant"](tmp_path), tmp_path / "gate"
    first = start_paused(apply_args(world, dest), tmp_path / "a", gate, 5)
    wait_paused(gate, first)
    first.send_signal(signal.SIGINT)
    (gate / "go").touch()
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and not summary["completed"] and "Traceback" not in stderr
    (tmp_path / "b").mkdir()
    done = run_cli(apply_args(world, dest), tmp_path / "b")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    # Everything the interrupted run wrote was committed, so the rerun reads exactly the rest.
    assert final["resumed"] and final["rows_read"] == N - summary["rows_read"] and final["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])


# -- the Milvus server (tests/servers.py; marker `server`) ----------------------------------------------
def test_kill9_then_rerun_from_another_folder_on_the_milvus_server(world, milvus_server, tmp_path):
    ENGINES["milvus-server"] = lambda d: milvus_server.uri(f"fault_{d.name[-12:].replace('-', '_')}")
    try:
        out = kill_and_rerun_elsewhere(world, tmp_path, "milvus-server", seed=3)
    finally:
        del ENGINES["milvus-server"]
    assert out["resumed"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_kill9_at_random_points_on_the_milvus_server(world, milvus_server, tmp_path, seed):
    ENGINES["milvus-server"] = lambda d: milvus_server.uri(f"fault_slow_{seed}")
    try:
        kill_and_rerun_elsewhere(world, tmp_path, "milvus-server", seed=100 + seed)
    finally:
        del ENGINES["milvus-server"]


def _status(dest: str, cwd: Path) -> dict:
    r = run_cli(["status", "--dest", dest, "--json"], cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_lease_refuses_a_second_apply_and_a_dead_holders_lease_is_taken_over(world, milvus_server, tmp_path):
    dest, gate = milvus_server.uri("leased"), tmp_path / "gate"
    # Another folder, another state dir and another lock folder (the local flock cannot see it), so only
    # the lease kept with the collection can refuse the second apply.
    first = start_paused(apply_args(world, dest), tmp_path / "a", gate, 3, V2V_LOCK_DIR=str(tmp_path / "locks-a"))
    wait_paused(gate, first)
    (tmp_path / "b").mkdir()
    elsewhere = {"V2V_LOCK_DIR": str(tmp_path / "locks-b")}
    second = run_cli(apply_args(world, dest), tmp_path / "b", **elsewhere)
    st = _status(dest, tmp_path / "b")
    assert second.returncode == 4, second.stderr
    assert f":{first.pid}:" in second.stderr and "leased by another apply" in second.stderr and "Fix:" in second.stderr
    assert st["lease"]["pid"] == first.pid and st["lease"]["live"] and st["owner"]["source"] == world["source"]

    first.kill()  # its lease is still live, but its process is gone from this machine: taken over at once
    first.wait(timeout=60)
    taken = run_cli(apply_args(world, dest), tmp_path / "b", **elsewhere)
    assert taken.returncode == 0, taken.stderr
    assert "taking over the lease" in taken.stderr and f"process {first.pid} on this machine is gone" in taken.stderr
    out = json.loads(taken.stdout)
    assert out["lease_taken_over_from"].split(":")[1] == str(first.pid) and out["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])
    assert _status(dest, tmp_path)["lease"] is None  # released at the end


def test_a_lease_of_another_machine_is_respected_until_it_expires(world, milvus_server, tmp_path):
    dest = milvus_server.uri("foreign_lease")
    assert run_cli(apply_args(world, dest), tmp_path).returncode == 0
    # What an apply on another machine writes (Lease's record): live, then as it is once its holder died
    # there and it ran out (the process is not on this machine, so only the expiry can free it).
    def lease_of_another_machine(expires_in: float) -> None:
        now = time.time()
        with open_store(dest) as s:
            s.write_state("lease", {"holder": "other-host:4242:abcd", "host": "other-host", "pid": 4242,
                                    "acquired_at": now - 60, "renewed_at": now - 20,
                                    "expires_at": now + expires_in, "ttl": 60})

    lease_of_another_machine(600)
    refused = run_cli(apply_args(world, dest), tmp_path)
    assert refused.returncode == 4 and "other-host:4242:abcd" in refused.stderr, refused.stderr
    lease_of_another_machine(-1)
    assert not _status(dest, tmp_path)["lease"]["live"]
    taken = run_cli(apply_args(world, dest), tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert "taking over the lease of other-host:4242:abcd" in taken.stderr and "expired" in taken.stderr
    assert_exact_copy(world["source"], dest, world["translator"])


def test_lease_is_renewed_while_apply_runs(world, milvus_server, tmp_path):
    dest, gate = milvus_server.uri("renewed"), tmp_path / "gate"
    first = start_paused(apply_args(world, dest, "--lease-seconds", "1.5"), tmp_path / "a", gate, 2)
    wait_paused(gate, first)
    seen = _status(dest, tmp_path)["lease"]
    deadline = time.monotonic() + 60
    while (now := _status(dest, tmp_path)["lease"])["renewed_at"] == seen["renewed_at"]:
        assert time.monotonic() < deadline, "the lease was not renewed"
    assert now["holder"] == seen["holder"] and now["expires_at"] > seen["expires_at"] and now["live"]
    (gate / "go").touch()
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert_exact_copy(world["source"], dest, world["translator"])


def test_milvus_server_killed_and_restarted_mid_apply_then_the_rerun_completes(world, milvus_server, tmp_path):
    dest, gate = milvus_server.uri("restarted"), tmp_path / "gate"
    first = start_paused(apply_args(world, dest, "--checkpoint-seconds", "0"), tmp_path / "a", gate, 4)
    wait_paused(gate, first)
    milvus_server.stop()
    try:
        (gate / "go").touch()  # the run goes on against a stopped server: it retries, then gives up
        stdout, stderr = first.communicate(timeout=600)
    finally:
        milvus_server.start()
    if first.returncode != 0:  # retries exhausted: one clear line, and the state says why
        assert first.returncode == 3 and "Fix:" in stderr and "Traceback" not in stderr, stderr
    (tmp_path / "b").mkdir()
    done = run_cli(apply_args(world, dest), tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])
