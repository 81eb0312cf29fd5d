"""mini-vec2vec (translators.minivec2vec): its steps on problems with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

import shared_data
from _workflow_helpers import need_data
from translators import fit, paired_metrics
from translators.errors import TranslatorUsageError
from translators.linear import random_semi_orthogonal
from translators.minivec2vec import match_centres, mean_of_nearest

# every row clustered on both sides (kmeans_sample >= rows): independent subsamples of 1,200 of these 1,500 rows
# already gave anchors too wrong to start from (median cosine to the truth 0.13; start top-1 0.04).
FAST = dict(anchor_runs=4, qap_restarts=30, kmeans_sample=1500, icp_rounds=10, icp_batch=400, final_clusters=40)


def test_qap_recovers_a_hidden_permutation_of_rotated_centres():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 16)).astype(np.float32)
    hidden = rng.permutation(12)
    rotated = centres @ random_semi_orthogonal(16, 16, 3)
    found = match_centres(centres, rotated[hidden], np.random.default_rng(1), restarts=20)
    # found[i] is the row of the shuffled copy matched to centre i: the inverse of `hidden`
    assert np.array_equal(hidden[found], np.arange(12))


def test_mean_of_nearest_is_the_brute_force_mean():
    rng = np.random.default_rng(2)
    q, keys = rng.standard_normal((30, 8)), rng.standard_normal((200, 8))
    values = rng.standard_normal((200, 5)).astype(np.float32)
    got = mean_of_nearest(q, keys, values, 7)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (keys / np.linalg.norm(keys, axis=1, keepdims=True)).T
    want = np.stack([values[np.argsort(-row)[:7]].mean(axis=0) for row in cos])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_recovers_an_unknown_rotation_without_pairs_and_is_deterministic():
    need_data()
    sp = shared_data.split()
    x = shared_data.embeddings("minilm", sp["A"][:1500])
    rot = random_semi_orthogonal(384, 384, seed=11)
    y = (x @ rot)[np.random.default_rng(5).permutation(len(x))]  # same texts, order unknown
    test = shared_data.embeddings("minilm", sp["test"][:1000])
    t = fit(x, y, method="mini-vec2vec", seed=0, **FAST)
    m = paired_metrics(t(test), test @ rot)
    assert m["top1"] > 0.95
    assert t.config["method"] == "mini-vec2vec" and "health" in t.metrics
    assert fit(x, y, method="mini-vec2vec", seed=0, **FAST).fingerprint == t.fingerprint


def test_pairs_and_unknown_options_are_refused_with_a_fix():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    with pytest.raises(TranslatorUsageError) as err:
        fit(x, y, method="mini-vec2vec", pairs=(x[:5], y[:5]))
    assert err.value.fix
    with pytest.raises(TranslatorUsageError, match="clusterz"):
        fit(x, y, method="mini-vec2vec", clusterz=3)
