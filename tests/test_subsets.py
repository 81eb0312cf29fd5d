"""Subsets and rate limits: --filter in Milvus and Qdrant syntax, --ids on every engine, a resumed run keeps its
selection (another one is refused), --max-rate, and the retry policy. The expected rows are computed in
Python from the payloads, independently of the engines' filters."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _workflow_helpers import fit_translator, need_data, read_all, rows_of, run_cli, start_cli, wait_for_progress, write_store
from connectors.errors import TransientStoreError, UnreadableStoreError
from connectors.retry import Retrier, is_transient
from v2v_migrate.checkpoint import state_dir_for
from v2v_migrate.errors import UsageError
from v2v_migrate.throttle import RateLimiter

N = 900


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("subsets")
    return {"root": root, "translator": fit_translator(root / "translator"), "rows": rows_of("A", 0, N)}


def _source(world, uri: str) -> str:
    """A store of N real rows whose payload has a tenant (r % 3) and a year (2015 + r % 10)."""
    import shared_data

    from connectors import open_store
    from connectors.base import Batch

    rows = world["rows"]
    with open_store(uri) as s:
        s.create(384, "cosine")
        s.upsert(Batch([int(r) for r in rows], shared_data.embeddings("minilm", rows),
                       [{"tenant": f"t{int(r) % 3}", "year": 2015 + int(r) % 10} for r in rows]))
        s.flush()
    return uri


def _apply(world, source, dest, cwd, *extra):
    res = run_cli(["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest,
                   "--state-dir", str(cwd / "state"), "--batch-size", "100", "--json", *extra], cwd)
    return res, (json.loads(res.stdout) if res.returncode == 0 else None)


def _expected(world, keep) -> list:
    return sorted(int(r) for r in world["rows"] if keep(int(r) % 3, 2015 + int(r) % 10))


FILTERS = {
    "milvus": 'tenant == "t1" and year >= 2020',
    "qdrant-edge": '{"must": [{"key": "tenant", "match": {"value": "t1"}}, {"key": "year", "range": {"gte": 2020}}]}',
    "qdrant": '{"must": [{"key": "tenant", "match": {"value": "t1"}}, {"key": "year", "range": {"gte": 2020}}]}',
}
URIS = {"milvus": "milvus:{d}/src.db#docs", "qdrant-edge": "qdrant-edge:{d}/edge#docs", "qdrant": "qdrant:{d}/q#docs"}


@pytest.mark.parametrize("engine", list(FILTERS))
def test_filter_in_the_engines_syntax_copies_exactly_the_matching_rows(world, tmp_path, engine):
    source = _source(world, URIS[engine].format(d=tmp_path))
    res, out = _apply(world, source, f"parquet:{tmp_path / 'dest'}", tmp_path, "--filter", FILTERS[engine])
    assert res.returncode == 0, res.stderr
    want = _expected(world, lambda tenant, year: tenant == 1 and year >= 2020)
    ids, _, payloads = read_all(f"parquet:{tmp_path / 'dest'}")
    assert sorted(ids) == want and len(ids) == len(set(ids)) == out["rows_written"]
    assert all(p["tenant"] == "t1" and p["year"] >= 2020 for p in payloads)
    assert out["selection"] == {"filter": FILTERS[engine]}


def test_a_filter_where_the_engine_has_none_is_refused(world, tmp_path):
    source = _source(world, f"faiss:{tmp_path / 'src.faiss'}")
    res, _ = _apply(world, source, f"parquet:{tmp_path / 'dest'}", tmp_path, "--filter", "year > 2020")
    assert res.returncode == 2 and "--ids FILE" in res.stderr and not (tmp_path / "dest").exists()
    bad, _ = _apply(world, _source(world, f"qdrant-edge:{tmp_path}/edge#docs"), f"parquet:{tmp_path / 'd2'}",
                    tmp_path, "--filter", "year > 2020")
    assert bad.returncode == 2 and "not JSON" in bad.stderr


@pytest.mark.parametrize("engine", ["faiss", "parquet"])
def test_id_list_copies_the_listed_rows_that_exist(world, tmp_path, engine):
    source = _source(world, f"faiss:{tmp_path / 'src.faiss'}" if engine == "faiss" else f"parquet:{tmp_path / 'src'}")
    listed = [int(r) for r in world["rows"][::7]] + [-1, 10**12]  # two ids the source does not hold
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{x}\n" for x in listed))
    res, out = _apply(world, source, f"milvus:{tmp_path / 'dest.db'}#docs", tmp_path, "--ids", str(ids_file))
    assert res.returncode == 0, res.stderr
    got, _, _ = read_all(f"milvus:{tmp_path / 'dest.db'}#docs")
    assert sorted(got) == sorted(listed[:-2]) and out["ids_missing"] == 2
    assert out["selection"]["ids_sha256"] and out["dest_count"] == len(listed) - 2


def test_a_resumed_run_keeps_its_filter_and_refuses_another(world, tmp_path):
    source = _source(world, f"qdrant-edge:{tmp_path}/edge#docs")
    dest, state = f"faiss:{tmp_path / 'dest.faiss'}", tmp_path / "state"
    flt = '{"must": [{"key": "tenant", "match": {"any": ["t0", "t2"]}}]}'
    args = ["apply", "--translator", str(world["translator"]), "--source", source, "--dest", dest, "--state-dir",
            str(state), "--batch-size", "50", "--checkpoint-seconds", "0", "--filter", flt, "--json"]
    proc = start_cli([*args, "--max-rate", "100"], tmp_path)  # ~6 s for the 600 rows: killed mid-run
    cp = wait_for_progress(state_dir_for(dest, state), 100, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert not cp["completed"] and cp["selection"] == {"filter": flt}
    other = run_cli([a if a != flt else '{"must": [{"key": "tenant", "match": {"value": "t1"}}]}' for a in args],
                    tmp_path)
    assert other.returncode == 5 and "selection" in other.stderr and "--restart" in other.stderr
    everything = run_cli([a for a in args if a not in ("--filter", flt)], tmp_path)
    assert everything.returncode == 5  # no filter is another selection too
    done = run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resumed"] and out["resumed_after_rows"] >= 100
    ids, _, _ = read_all(dest)
    assert sorted(ids) == _expected(world, lambda tenant, year: tenant != 1) and len(ids) == len(set(ids))


def test_max_rate_limits_writes_and_refuses_nonsense(world, tmp_path):
    source = write_store(f"faiss:{tmp_path / 'src.faiss'}", rows_of("A", 0, 300))
    res, out = _apply(world, source, f"faiss:{tmp_path / 'dest.faiss'}", tmp_path, "--max-rate", "1000")
    assert res.returncode == 0, res.stderr
    assert out["max_rate"] == 1000 and out["dest_count"] == 300
    bad, _ = _apply(world, source, f"faiss:{tmp_path / 'd2.faiss'}", tmp_path, "--max-rate", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --max-rate") and "Fix:" in bad.stderr


class FakeClock:
    """Time that passes only when someone sleeps: the limiter's schedule, checked without waiting."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_schedule():
    clock = FakeClock()
    limiter = RateLimiter(200, clock=lambda: clock.now, sleep=clock.sleep)
    starts = []
    for n in (100, 100, 50, 250, 100):
        limiter.wait(n)
        starts.append(clock.now - 100.0)
        clock.now += 0.1  # the write itself takes 0.1 s
    # batch k starts when the rows before it have had their 1/200 s each: 0, 0.5, 1.0, 1.25, 2.5
    assert np.allclose(starts, [0.0, 0.5, 1.0, 1.25, 2.5])
    assert np.isclose(limiter.waited, sum(clock.sleeps)) and np.isclose(sum(clock.sleeps), 2.5 - 0.4)
    free = RateLimiter(None, clock=lambda: clock.now, sleep=clock.sleep)
    free.wait(10**6)
    assert len(clock.sleeps) == 4 and free.waited == 0
    with pytest.raises(UsageError):
        RateLimiter(-5)


def test_retries_are_bounded_and_only_for_transient_errors():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    def timing_out():
        raise TimeoutError("read timed out")

    def bad_request():
        calls.append(1)
        raise ValueError("bad field")

    retrier = Retrier(5, 0.5, sleep=clock.sleep)
    assert retrier.call(flaky, "upsert") == "ok" and retrier.retried == 2 and clock.sleeps == [0.5, 1.0]
    always = Retrier(4, 0.5, max_delay=1.0, sleep=clock.sleep)
    with pytest.raises(TransientStoreError, match="failed 4 time") as e:
        always.call(timing_out, "scroll")
    assert "Fix:" in str(e.value) and clock.sleeps[2:] == [0.5, 1.0, 1.0]  # capped back-off
    calls.clear()
    with pytest.raises(ValueError):  # a bad request is not retried
        Retrier(5, sleep=clock.sleep).call(bad_request, "upsert")
    assert len(calls) == 1
    assert is_transient(RuntimeError("HTTP 429 Too Many Requests")) and is_transient(RuntimeError("rate limited"))
    assert not is_transient(UnreadableStoreError("collection is corrupt"))
