"""Paired metrics against a brute-force reference on seeded data."""
import numpy as np
import pytest

from translators.metrics import mean_cosine, mean_rank, neighbour_recall, paired_metrics, ranks, recall_at_k, top1
from translators.errors import DimensionMismatchError, InvalidVectorsError


def _brute_ranks(pred, target, pool):
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    t = target / np.linalg.norm(target, axis=1, keepdims=True)
    out = []
    for i in range(len(p)):
        start = (i // pool) * pool
        cand = t[start:start + pool]
        sims = cand @ p[i]
        out.append(1 + int(np.sum(sims > sims[i - start])))
    return np.array(out)


@pytest.fixture(scope="module")
def noisy_pairs():
    rng = np.random.default_rng(3)
    target = rng.standard_normal((300, 16)).astype(np.float32)
    pred = (target + 0.9 * rng.standard_normal(target.shape)).astype(np.float32)
    return pred, target


@pytest.mark.parametrize("pool", [1, 64, 128, 300, 8192])
def test_ranks_match_brute_force(noisy_pairs, pool):
    pred, target = noisy_pairs
    ref = _brute_ranks(pred, target, pool)
    np.testing.assert_array_equal(ranks(pred, target, pool), ref)
    assert top1(pred, target, pool) == pytest.approx(np.mean(ref == 1))
    assert mean_rank(pred, target, pool) == pytest.approx(ref.mean())
    assert recall_at_k(pred, target, 5, pool) == pytest.approx(np.mean(ref <= 5))


def test_metrics_are_informative(noisy_pairs):
    pred, target = noisy_pairs
    ref = _brute_ranks(pred, target, 300)
    assert 0.0 < np.mean(ref == 1) < 1.0  # the fixture is neither trivial nor hopeless
    perfect = paired_metrics(target * 3.0, target, pool=128)
    assert perfect == {"mean_cosine": pytest.approx(1.0), "top1": 1.0, "mean_rank": 1.0, "n": 300, "pool": 128}


def test_mean_cosine_reference(noisy_pairs):
    pred, target = noisy_pairs
    ref = np.mean([float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(pred, target)])
    assert mean_cosine(pred, target) == pytest.approx(ref, abs=1e-6)
    m = paired_metrics(pred, target, pool=128)
    assert m["mean_cosine"] == pytest.approx(ref, abs=1e-6)
    assert m["top1"] == pytest.approx(np.mean(_brute_ranks(pred, target, 128) == 1))


def test_random_guessing_rank_is_about_half_the_pool():
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((2000, 32)).astype(np.float32)
    target = rng.standard_normal((2000, 32)).astype(np.float32)
    assert 900 < mean_rank(pred, target, pool=2000) < 1100


def test_neighbour_recall():
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((200, 8)).astype(np.float32)
    queries = rng.standard_normal((50, 8)).astype(np.float32)
    assert neighbour_recall(queries, docs, docs, k=10) == 1.0
    shuffled = docs[rng.permutation(200)]
    assert neighbour_recall(queries, shuffled, docs, k=10) < 0.3


def test_bad_inputs_are_typed():
    a = np.zeros((4, 3), np.float32)
    with pytest.raises(DimensionMismatchError):
        mean_cosine(a, np.zeros((4, 5), np.float32))
    with pytest.raises(InvalidVectorsError):
        top1(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(InvalidVectorsError):
        paired_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
