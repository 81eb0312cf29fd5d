"""translators.anchors on real vectors (skipped when the shared data is absent)."""
import numpy as np
import pytest

from v2v_migrate import shared_data

if shared_data.data_root() is None:
    pytest.skip("shared reference data not found (set V2V_SHARED_DATA)", allow_module_level=True)

from translators.anchors import _double_centred, match_centroids, init_candidates  # noqa: E402
from translators.linear import random_semi_orthogonal, to_fit_space, unit  # noqa: E402
from translators.matching import spherical_kmeans  # noqa: E402
from translators.unsupervised import _refine_linear  # noqa: E402

# Fixed work instead of a time budget: the deadline would make results depend on machine speed.
SMALL = {"runs": 2, "qap_restarts": 3, "icp_rounds": 3}


@pytest.fixture(scope="module")
def real():
    x = shared_data.embeddings("minilm", shared_data.split()["A"][:2000])
    return to_fit_space(x, unit(x).mean(axis=0))


def test_qap_recovers_a_shuffled_centroid_order(real):
    rng = np.random.default_rng(0)
    ca, _ = spherical_kmeans(real, 24, rng)
    order = rng.permutation(24)
    q = random_semi_orthogonal(384, 384, 1)
    perm, _ = match_centroids(ca, unit(ca[order] @ q), rng, restarts=5)
    # cb[perm] must line up with ca: cb = ca[order] @ q, so order[perm] is the identity
    assert np.array_equal(order[perm], np.arange(24))
    assert np.allclose(_double_centred(ca), _double_centred(ca).T)


@pytest.mark.slow  # the default 24 clusterings x 30 QAP starts: minutes on 2 shared cores
def test_candidate_recovers_a_rotation_of_real_vectors(real):
    q = random_semi_orthogonal(384, 384, 3)
    shuffle = np.random.default_rng(1).permutation(len(real))
    ys = real[shuffle] @ q
    cands = init_candidates(real, ys, np.random.default_rng(0), budget_s=1e6)
    assert [name for name, _ in cands] == ["anchors_k20", "anchors_k32"]
    best_top1 = 0.0
    for _, w in cands:
        assert w.shape == (384, 384) and np.allclose(w.T @ w, np.eye(384), atol=1e-3)
        w = _refine_linear(w, real, ys, None, 3, 10.0)
        nearest = np.argmax(unit(real @ w) @ (real @ q).T, axis=1)
        best_top1 = max(best_top1, float(np.mean(nearest == np.arange(len(real)))))
    assert best_top1 == 1.0


@pytest.mark.slow  # ~80 s on 2 shared cores; experimental module, not used by auto
def test_deterministic_for_a_seed_and_handles_unequal_dims(real):
    ys = real[:1500] @ random_semi_orthogonal(384, 200, 2)  # 384 -> 200: a projection, dims differ
    a = init_candidates(real, ys, np.random.default_rng(7), budget_s=1e6, **SMALL)
    b = init_candidates(real, ys, np.random.default_rng(7), budget_s=1e6, **SMALL)
    assert len(a) == len(b) == 2
    for (na, wa), (nb, wb) in zip(a, b):
        assert na == nb and wa.shape == (384, 200) and np.array_equal(wa, wb)
