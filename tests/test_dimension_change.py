"""A dimension change through `apply`: minilm (384-d) -> mpnet (768-d) into NEW Milvus Lite, Qdrant Edge and
Parquet destinations, created by apply with the translator's dimension, scored against the TRUE 768-d mpnet
vectors of the same held-out texts.

The floor is not a number taken from the code: the test fits its own least-squares map (numpy lstsq) on the
same training pairs and requires the migrated vectors to do about as well as it on the held-out rows.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import shared_data
from _workflow_helpers import need_data, read_all, run_cli, write_store

DESTS = {
    "milvus-lite": lambda d: f"milvus:{d / 'dst.db'}#docs",
    "qdrant-edge": lambda d: f"qdrant-edge:{d / 'edge'}#docs",
    "parquet": lambda d: f"parquet:{d / 'dst_parquet'}",
}
N_TRAIN, N_DOCS, N_POOL = 2500, 300, 8192


def _scores(pred: np.ndarray, truth_docs: np.ndarray, pool: np.ndarray) -> tuple[float, float]:
    """(mean cosine to the true vector, top-1: the true vector is the nearest of the pool's candidates).
    The pool's first len(pred) rows are the true vectors of pred's rows, in order."""
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    cos = float(np.mean(np.sum(p * truth_docs, axis=1)))
    top1 = float(np.mean(np.argmax(p @ pool.T, axis=1) == np.arange(len(p))))
    return cos, top1


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    from translators import fit

    root = tmp_path_factory.mktemp("dim_change")
    train = np.sort(shared_data.split()["B"][:N_TRAIN])
    assert train.max() < shared_data.info()["models"]["mpnet"]["rows"]
    x, y = shared_data.embeddings("minilm", train), shared_data.embeddings("mpnet", train)
    fit(x, y, method="ridge", pairs=(x, y), seed=0).save(root / "translator")
    test = shared_data.split()["test"][:N_POOL]  # held out: never in any training pairs
    docs = np.sort(test[:N_DOCS])
    others = np.setdiff1d(test, docs)
    pool = shared_data.embeddings("mpnet", np.concatenate([docs, others]))
    # The independent reference: ordinary least squares with a bias, on the same pairs.
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)])
    w, *_ = np.linalg.lstsq(xb, y, rcond=None)
    xd = shared_data.embeddings("minilm", docs)
    ref = np.hstack([xd, np.ones((len(xd), 1), np.float32)]) @ w
    return {"root": root, "translator": root / "translator", "docs": docs, "pool": pool,
            "reference": _scores(ref, pool[:N_DOCS], pool),
            "source": write_store(f"faiss:{root / 'src.faiss'}", docs)}


@pytest.mark.parametrize("engine", list(DESTS))
def test_384_to_768_apply_into_a_new_destination_matches_the_true_vectors(world, tmp_path, engine):
    dest = DESTS[engine](tmp_path)
    res = run_cli(["apply", "--translator", str(world["translator"]), "--source", world["source"], "--dest", dest,
                   "--state-dir", str(tmp_path / "state"), "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["created_dest"] is True and out["dest_count"] == N_DOCS
    from connectors import open_store

    with open_store(dest) as s:
        assert s.dim == 768 and s.metric == "cosine"
    ids, vecs, pays = read_all(dest)
    assert sorted(ids) == [int(r) for r in world["docs"]] and vecs.shape == (N_DOCS, 768)
    by_id = {i: k for k, i in enumerate(ids)}
    order = [by_id[int(r)] for r in world["docs"]]
    assert [pays[k]["row"] for k in order] == [int(r) for r in world["docs"]]  # payloads followed their rows
    cos, top1 = _scores(vecs[order], world["pool"][:N_DOCS], world["pool"])
    ref_cos, ref_top1 = world["reference"]
    # chance top-1 is 1/8192; the least-squares reference reaches about 0.98 here, mean cosine about 0.73
    assert ref_top1 > 0.5
    assert cos >= ref_cos - 0.02 and top1 >= ref_top1 - 0.05, (cos, top1, ref_cos, ref_top1)
