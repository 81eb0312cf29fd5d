"""The label-free alignability probe (translators.alignability) and its line in `plan`."""
from __future__ import annotations

import numpy as np
import pytest

import shared_data
from _workflow_helpers import need_data, rows_of, write_store
from translators.alignability import local_geometry, probe
from translators.linear import random_semi_orthogonal


def _sphere_sample(rng, n, intrinsic, ambient=64):
    """n unit rows spread over a great (intrinsic-1)-sphere of a random intrinsic-dim subspace."""
    basis = random_semi_orthogonal(intrinsic, ambient, int(rng.integers(1000)))
    z = rng.standard_normal((n, intrinsic)).astype(np.float32) @ basis
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_local_dimension_matches_the_known_dimension_of_synthetic_data():
    rng = np.random.default_rng(0)
    # Points on a great k-sphere (dimension k - 1). The MLE from 10 neighbours is biased low in high
    # dimension, so check the ordering and the low-dimensional value, which it gets right.
    dims = {k: local_geometry(_sphere_sample(rng, 3000, k))["intrinsic_dim"] for k in (4, 9, 25)}
    assert 2.4 < dims[4] < 3.6
    assert 6.5 < dims[9] < 9.5
    assert dims[4] < dims[9] < dims[25]


def test_a_rotated_copy_is_alignable_and_a_different_geometry_is_not():
    rng = np.random.default_rng(1)
    x = _sphere_sample(rng, 2000, 12) + 0.05  # not centred, like a sentence encoder's cone
    rotation = random_semi_orthogonal(64, 64, 5)
    same = probe(x, x @ rotation, seed=3)
    # A rotation keeps every distance, so both sides' figures agree (the probe centres each side itself).
    assert same["alignable"] and abs(same["log_ratio"]) < 1e-3
    assert same["source_clustering"] == pytest.approx(same["target_clustering"], abs=1e-3)
    other = probe(x, _sphere_sample(rng, 2000, 30), seed=3)
    assert not other["alignable"] and other["log_ratio"] < -0.2 and "beyond" in other["reason"]


def test_too_few_rows_are_not_judged():
    rng = np.random.default_rng(2)
    out = probe(_sphere_sample(rng, 50, 5), _sphere_sample(rng, 50, 30))
    assert out["alignable"] and not out["decided"] and "too few" in out["reason"]


@pytest.mark.parametrize("src,tgt,alignable", [("l3", "minilm", True), ("minilm", "mpnet", True),
                                               ("minilm", "e5", False), ("e5", "mpnet", False)])
def test_probe_on_real_model_pairs(src, tgt, alignable):
    """auto without pairs reaches top-1 0.90-0.98 on l3/minilm and minilm/mpnet and fails (<= 0.001) on every
    pair with e5 (docs/results.md); the probe must say so from 1,500 unpaired rows per side."""
    need_data()
    sp = shared_data.split()
    a, b = sp["A"][sp["A"] < 20000][:1500], sp["B"][sp["B"] < 20000][:1500]
    out = probe(shared_data.embeddings(src, np.sort(a)), shared_data.embeddings(tgt, np.sort(b)))
    assert out["decided"] and out["alignable"] is alignable


def test_plan_warns_before_training_when_the_pair_needs_pairs(tmp_path):
    from v2v_migrate.plan import make_plan, summary_text

    need_data()
    source = write_store(f"faiss:{tmp_path / 'src.faiss'}", rows_of("A", 0, 1500))
    unalignable = write_store(f"faiss:{tmp_path / 'e5.faiss'}", rows_of("B", 0, 1500), model="e5", payloads=False)
    related = write_store(f"faiss:{tmp_path / 'l3.faiss'}", rows_of("B", 0, 1500), model="l3", payloads=False)
    plan = make_plan(source, unalignable, f"faiss:{tmp_path / 'd1.faiss'}")
    assert plan["train"]["alignability"]["alignable"] is False
    assert "this pair needs pairs: pass --encoder or --pairs" in summary_text(plan)
    plan = make_plan(source, related, f"faiss:{tmp_path / 'd2.faiss'}")
    assert plan["train"]["alignability"]["alignable"] is True
    assert "needs pairs" not in summary_text(plan)
