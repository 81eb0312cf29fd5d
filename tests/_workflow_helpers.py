"""Helpers for the workflow tests (plan/train/apply/CLI): real stores built from the shared reference data,
real translators, and running the real CLI in a subprocess. Not a test module (leading underscore)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import shared_data

REPO = Path(__file__).resolve().parent.parent


# A new destination of each embedded engine under a test's folder.
DEST_ENGINES = {
    "faiss": lambda d: f"faiss:{d / 'dest.faiss'}",
    "parquet": lambda d: f"parquet:{d / 'dest_parquet'}",
    "milvus": lambda d: f"milvus:{d / 'dest.db'}#docs",
    "qdrant": lambda d: f"qdrant:{d / 'dest_qdrant'}#docs",
    "qdrant-edge": lambda d: f"qdrant-edge:{d / 'dest_edge'}#docs",
}

def need_data() -> None:
    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found (set V2V_SHARED_DATA to the folder holding pypi/)")


@lru_cache(maxsize=1)
def _texts() -> dict[int, str]:
    return {r["row"]: r["text"] for r in shared_data.texts()}


def rows_of(part: str, start: int, n: int) -> np.ndarray:
    return np.sort(shared_data.split()[part][start:start + n])


def payloads_for(rows) -> list[dict]:
    texts = _texts()
    return [{"text": texts[int(r)], "row": int(r), "tags": ["pypi", f"r{int(r) % 7}"]} for r in rows]


def write_store(uri: str, rows, model: str = "minilm", payloads: bool = True, metric: str = "cosine",
                ids=None, vectors=None) -> str:
    """Create a real store at `uri` holding the given reference rows (ids = row numbers)."""
    from connectors import open_store
    from connectors.base import Batch

    vecs = shared_data.embeddings(model, rows) if vectors is None else vectors
    ids = [int(r) for r in rows] if ids is None else ids
    with open_store(uri) as s:
        s.create(vecs.shape[1], metric, id_type="int" if isinstance(ids[0], int) else "str", exist_ok=True)
        for start in range(0, len(ids), 2048):
            s.upsert(Batch(ids[start:start + 2048], vecs[start:start + 2048],
                           payloads_for(rows[start:start + 2048]) if payloads else None))
        s.flush()
    return uri


def fit_translator(out: Path, source_model: str = "minilm", target_model: str = "e5", n_pairs: int = 2000,
                   seed: int = 0) -> Path:
    """A real (supervised, fast) translator fitted on known pairs from split B."""
    from translators import fit

    rows = rows_of("B", seed * n_pairs, n_pairs)
    x, y = shared_data.embeddings(source_model, rows), shared_data.embeddings(target_model, rows)
    fit(x, y, method="procrustes", pairs=(x, y), seed=seed).save(out)
    return out


def read_all(uri: str) -> tuple[list, np.ndarray, list]:
    """(ids, vectors, payloads) of every row in stream order; duplicates kept (tests count them)."""
    from connectors import open_store

    ids, vecs, pays = [], [], []
    with open_store(uri) as s:
        for b in s.iter_batches(1024):
            ids += list(b.ids)
            vecs.append(b.vectors)
            pays += list(b.payloads) if b.payloads is not None else [None] * len(b)
    return ids, (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)), pays


def assert_exact_copy(source_uri: str, dest_uri: str, translator_dir: Path) -> None:
    """Destination holds exactly the source's rows: no id missing, none duplicated, payloads intact,
    vectors equal to the translated source vectors."""
    from v2v_migrate import load_translator

    s_ids, s_vecs, s_pays = read_all(source_uri)
    d_ids, d_vecs, d_pays = read_all(dest_uri)
    assert len(d_ids) == len(set(d_ids)), f"{len(d_ids) - len(set(d_ids))} duplicated ids in the destination"
    assert sorted(d_ids) == sorted(s_ids)
    d_row = {x: i for i, x in enumerate(d_ids)}
    order = [d_row[x] for x in s_ids]
    for i, j in enumerate(order):
        got = {k: v for k, v in (d_pays[j] or {}).items() if not k.startswith("_v2v")}
        assert got == s_pays[i], f"payload of id {s_ids[i]} changed"
    want = load_translator(str(translator_dir))(s_vecs)
    want /= np.linalg.norm(want, axis=1, keepdims=True)  # cosine stores may keep normalised vectors
    got = d_vecs[order] / np.linalg.norm(d_vecs[order], axis=1, keepdims=True)
    assert np.abs(got - want).max() < 1e-4


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    # The repo first on the path: the CLI must import this checkout whatever the cwd.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("V2V_DEBUG", None)
    env.update(extra)
    return env


def start_cli(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "v2v_migrate.cli", *args], cwd=cwd, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "v2v_migrate.cli", *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def wait_for_progress(state: Path, min_rows: int, proc: subprocess.Popen, timeout: float = 120) -> dict:
    """Poll the checkpoint until it records at least `min_rows` committed rows (the run is then mid-way)."""
    deadline = time.monotonic() + timeout
    path = state / "checkpoint.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"apply ended early (rc {proc.returncode}): {err[-2000:]}")
        if path.exists():
            try:
                cp = json.loads(path.read_text())
            except ValueError:
                cp = {}
            if cp.get("rows_read", 0) >= min_rows:
                return cp
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no checkpoint with {min_rows} rows within {timeout}s")


def console_script() -> str:
    """The installed `v2v-migrate` entry point (what users type): next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / "v2v-migrate"
    found = str(here) if here.is_file() else shutil.which("v2v-migrate")
    if not found:
        pytest.skip("the v2v-migrate console script is not installed (pip install -e .)")
    return found


def start_paused(args: list[str], cwd: Path, gate: Path, pause_after: int, **env: str) -> subprocess.Popen:
    """The real CLI, its translator pausing after `pause_after` batches (see tests/_paused_apply.py)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "_paused_apply.py"), str(gate),
                             str(pause_after), *args], cwd=cwd, env=cli_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_paused(gate: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run reports its pause (it has then written its owner mark and K batches went on)."""
    deadline = time.monotonic() + timeout
    while not (gate / "paused").exists():
        if proc.poll() is not None:
            raise AssertionError(f"apply ended before its pause (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"apply did not reach its pause within {timeout}s")
        time.sleep(0.02)


def brute_overlap(qa, da, qb, db, k=10) -> np.ndarray:
    """|top-k of qa[i] among da ∩ top-k of qb[i] among db| / k, row i excluded, one query at a time
    (the independent reference for retention and the status quo)."""
    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    out = []
    for i in range(len(qa)):
        sa, sb = unit(da) @ unit(qa[i:i + 1])[0], unit(db) @ unit(qb[i:i + 1])[0]
        sa[i] = sb[i] = -np.inf
        out.append(len(set(np.argsort(-sa)[:k]) & set(np.argsort(-sb)[:k])) / k)
    return np.array(out)
