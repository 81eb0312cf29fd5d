"""Generic fixtures: real vectors from the shared reference data, and payloads of every supported type.

Tests that need the shared data skip where it is absent, with the reason; under CI (CI=true) that skip is a
failure instead (see pytest_runtest_makereport below). benchmarks/shared_data.py is the benchmarks' own reader,
appended to sys.path here: after the packages, so nothing there shadows them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import connectors  # noqa: F401  (imported before benchmarks/ joins sys.path: its connectors.py is a script)

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))

import shared_data  # noqa: E402


def _require_shared_data() -> None:
    if shared_data.data_root() is None:
        pytest.skip(f"{shared_data.MISSING} (set V2V_SHARED_DATA to the folder holding pypi/)")


# -- CI: missing shared data fails -------------------------------------------------------------------------
# Every test that needs ../shared/data skips with a reason naming it (shared_data.MISSING, or "shared data has
# only N rows"), whichever way it skips: a fixture, a skipif mark, a module-level skip. Locally that is right
# (a checkout without the data still runs the rest); under CI it would silently run a fraction of the suite,
# so those skips, and only those, become failures there.
_DATA_SKIPS = (shared_data.MISSING, "shared data has only")


def _fail_missing_data_under_ci(report) -> None:
    if not (report.skipped and shared_data.in_ci()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(s in reason for s in _DATA_SKIPS):
        report.outcome = "failed"
        report.longrepr = (f"CI is set and the shared reference data is missing ({reason.removeprefix('Skipped: ')}): "
                           "under CI that is a failure, not a skip. Fix: provide ../shared/data or set "
                           "V2V_SHARED_DATA to the folder holding pypi/.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_data_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_data_under_ci(outcome.get_result())


@pytest.fixture(scope="module")
def torch_one_thread():
    """Small networks: one torch thread avoids oversubscription on the shared 2-core CI machine; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def real_vectors():
    """real_vectors(n, model='minilm', start=0) -> float32 (n, dim) of real embeddings (rows start..start+n)."""
    _require_shared_data()

    def load(n: int, model: str = "minilm", start: int = 0) -> np.ndarray:
        available = shared_data.info()["models"][model]["rows"]
        if start + n > available:
            pytest.skip(f"shared data has only {available} {model} rows, {start + n} needed")
        return shared_data.embeddings(model, np.arange(start, start + n))

    return load


@pytest.fixture(scope="session")
def real_texts():
    """real_texts(n) -> the first n rows of texts.jsonl as dicts (row, id, text)."""
    _require_shared_data()

    def load(n: int) -> list[dict]:
        return shared_data.texts(range(n))

    return load


def mixed_payloads(n: int, seed: int = 0, texts: list[str] | None = None) -> list[dict]:
    """n payloads covering every payload type the connectors promise to round-trip exactly.

    Every row has the same keys (a key missing from a row reads back as None in columnar stores).
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({
            "text": texts[i] if texts is not None else f"row {i} ünïcode ✓",
            "rank": int(i),
            "score": float(rng.standard_normal()),
            "ok": bool(i % 3 == 0),
            "maybe": None if i % 4 == 0 else f"v{i}",
            "tags": ["a", f"t{i % 5}"] if i % 2 else [],
            "meta": {"source": "pypi", "n": i, "nested": {"flag": i % 2 == 0}},
            "mixed": i if i % 2 else str(i),      # int in some rows, str in others: stored as JSON
            "big": 2**70 + i,                       # beyond int64: stored as JSON, stays exact
        })
    return out


@pytest.fixture
def payloads_for():
    """payloads_for(n, seed=0, texts=None) -> list of mixed payload dicts (see mixed_payloads)."""
    return mixed_payloads


# -- a real Milvus server (tests/servers.py) ----------------------------------------------------------
SERVER_FIXTURES = ("milvus_server", "milvus_server_auth")


def pytest_collection_modifyitems(config, items):
    """Tests that use a server fixture carry the `server` marker (select or skip them with -m)."""
    for item in items:
        if set(SERVER_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


def _server(tmp_path_factory, name: str, auth: bool):
    import servers

    reason = servers.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = servers.MilvusServer(tmp_path_factory.mktemp(name), auth=auth).start()
    return server


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A Milvus 2.3.5 standalone server on 127.0.0.1 for the whole session (fresh data folder).

    `.url` http://127.0.0.1:PORT, `.uri(collection)` milvus:http://127.0.0.1:PORT#collection, `.stop()`,
    `.start()` (restart on the same data folder and port). Skips where no server can run (reason given).
    """
    server = _server(tmp_path_factory, "milvus-server", auth=False)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def milvus_server_auth(tmp_path_factory):
    """Like milvus_server, with authorization on: clients need `.credentials_env()` (MILVUS_USER=root,
    MILVUS_PASSWORD=Milvus) in the environment or a credentials_file=, never in the URI."""
    server = _server(tmp_path_factory, "milvus-server-auth", auth=True)
    yield server
    server.cleanup()
