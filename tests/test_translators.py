"""Translators on small subsets of the real reference embeddings (skipped when the data is absent)."""
import json

import numpy as np
import pytest

import shared_data
from translators.errors import (
    DimensionMismatchError, InvalidVectorsError, TrainingError, TranslatorError, TranslatorUsageError,
)

if shared_data.data_root() is None:
    pytest.skip("shared reference data not found (set V2V_SHARED_DATA)", allow_module_level=True)

from translators import METHODS, fit, load_translator, paired_metrics  # noqa: E402
from translators.health import health_metrics  # noqa: E402
from translators.linear import random_semi_orthogonal  # noqa: E402


@pytest.fixture(scope="module")
def data():
    sp = shared_data.split()
    a, b, test = sp["A"][:2500], sp["B"][:2500], sp["test"][:1000]
    return {
        "xa": shared_data.embeddings("minilm", a), "yb": shared_data.embeddings("e5", b),
        "pairs": (shared_data.embeddings("minilm", b[:2000]), shared_data.embeddings("e5", b[:2000])),
        "xt": shared_data.embeddings("minilm", test), "yt": shared_data.embeddings("e5", test),
    }


@pytest.fixture(scope="module")
def procrustes(data):
    return fit(data["xa"], data["yb"], method="procrustes", pairs=data["pairs"])


def test_supervised_methods_beat_random_on_real_pairs(data, procrustes):
    rnd = paired_metrics(fit(data["xa"], data["yb"], method="random")(data["xt"]), data["yt"])
    pro = paired_metrics(procrustes(data["xt"]), data["yt"])
    rid = paired_metrics(fit(data["xa"], data["yb"], method="ridge", pairs=data["pairs"])(data["xt"]), data["yt"])
    assert rnd["top1"] < 0.01
    assert pro["top1"] > 0.6 and rid["top1"] > 0.6
    assert pro["mean_cosine"] > rnd["mean_cosine"] + 0.05


def test_outputs_live_in_raw_target_space(data, procrustes):
    out = procrustes(data["xt"])
    assert out.dtype == np.float32 and out.shape == data["yt"].shape
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # e5 vectors are unit length
    # the target mean is added back: translated and true vectors share the same offset from the origin
    cos_of_means = out.mean(0) @ data["yt"].mean(0) / np.linalg.norm(out.mean(0)) / np.linalg.norm(data["yt"].mean(0))
    assert cos_of_means > 0.99


def test_save_load_round_trip_is_bit_identical(tmp_path, data, procrustes):
    path = tmp_path / "tr"
    procrustes.save(path)
    procrustes.save(path)  # saving over an existing directory replaces it atomically
    loaded = load_translator(path)
    assert loaded.fingerprint == procrustes.fingerprint
    np.testing.assert_array_equal(loaded(data["xt"]), procrustes(data["xt"]))
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["method"] == "procrustes" and "library_versions" in cfg and cfg["source_dim"] == 384
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    other = fit(data["xa"], data["yb"], method="random", seed=1)
    assert other.fingerprint != procrustes.fingerprint


def test_load_errors_name_the_fix(tmp_path, procrustes):
    with pytest.raises(TranslatorError, match="does not exist"):
        load_translator(tmp_path / "nope")
    path = tmp_path / "tr"
    procrustes.save(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(TranslatorError, match="not valid JSON"):
        load_translator(path)
    procrustes.save(path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(cfg, arch="no-such-arch")))
    with pytest.raises(TranslatorError, match="unknown"):
        load_translator(path)
    procrustes.save(path)
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(TranslatorError, match="corrupt"):
        load_translator(path)
    procrustes.save(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(TranslatorError, match="model.safetensors") as err:
        load_translator(path)
    assert err.value.fix


def _rotation_problem(n=1200, out_dim=512):
    """Real minilm vectors, padded with zeros to out_dim and rotated: an exact, unknown isometry."""
    x = shared_data.embeddings("minilm", shared_data.split()["A"][:n])
    test = shared_data.embeddings("minilm", shared_data.split()["test"][:1000])
    rot = random_semi_orthogonal(384, out_dim, seed=11)
    shuffled = (x @ rot)[np.random.default_rng(5).permutation(n)]  # same texts, order unknown: no pairs
    return x, shuffled, test, test @ rot


FAST = dict(restarts=0, sample=1200, final_sample=1200, profile_sample=1200, eval_sample=400, iterations=4,
            final_iterations=2)


def test_auto_recovers_an_unknown_rotation_and_dimension_change_without_pairs():
    x, y, xt, yt = _rotation_problem()
    t = fit(x, y, method="auto", seed=0, **FAST)
    m = paired_metrics(t(xt), yt)
    assert t.source_dim == 384 and t.target_dim == 512
    assert m["top1"] == 1.0 and m["mean_cosine"] > 0.9
    health = t.metrics["health"]
    assert health["neighbour_consistency"] > 0.3 and health["mnn_share"] > 0.3
    again = fit(x, y, method="auto", seed=0, **FAST)
    assert again.fingerprint == t.fingerprint  # deterministic for a seed


def test_health_separates_a_good_map_from_a_random_one(data, procrustes):
    good = health_metrics(procrustes, data["xt"], data["yb"], seed=0, sample=1000)
    bad = health_metrics(fit(data["xa"], data["yb"], method="random"), data["xt"], data["yb"], seed=0, sample=1000)
    assert good["mnn_mean_cosine"] > bad["mnn_mean_cosine"] + 0.05
    assert good["neighbour_consistency"] > bad["neighbour_consistency"] + 0.05


def test_identity_baseline_and_methods_list(data):
    t = fit(data["xa"], data["yb"], method="identity")
    np.testing.assert_array_equal(t(data["xt"][:5]), data["xt"][:5])
    assert set(METHODS) >= {"auto", "procrustes", "ridge", "vec2vec", "identity", "random"}


def test_bad_inputs_get_typed_errors_with_fixes(data):
    xa, yb = data["xa"][:300], data["yb"][:300]
    bad = xa.copy()
    bad[3, 7] = np.nan
    with pytest.raises(InvalidVectorsError, match="NaN"):
        fit(bad, yb, method="random")
    with pytest.raises(TranslatorUsageError, match="unknown translation method"):
        fit(xa, yb, method="magic")
    with pytest.raises(TrainingError, match="at least 256"):
        fit(xa[:100], yb, method="auto")
    with pytest.raises(TrainingError, match="needs known pairs"):
        fit(xa, yb, method="procrustes")
    with pytest.raises(DimensionMismatchError, match="target side of the pairs"):
        fit(xa, yb, method="procrustes", pairs=(xa[:10], xa[:10, :100]))
    with pytest.raises(TrainingError, match="10 source rows but 9"):
        fit(xa, yb, method="procrustes", pairs=(xa[:10], yb[:9]))
    with pytest.raises(DimensionMismatchError):
        fit(xa, np.zeros((300, 512), np.float32) + 1, method="identity")
    with pytest.raises(TranslatorUsageError, match="unknown option"):
        fit(xa, yb, method="auto", bogus=1)
    t = fit(xa, yb, method="random")
    with pytest.raises(DimensionMismatchError):
        t(np.zeros((2, 768), np.float32))


def test_five_known_pairs_start_auto_at_the_right_map_where_procrustes_on_them_cannot():
    """The relative-anchor start: every row described by its cosines to the known pairs. On an exact unknown
    rotation 5 pairs put it at the answer; Procrustes on the same 5 pairs is near chance (top-1 0.013)."""
    from translators.arrays import unit
    from translators.linear import procrustes, side_stats, to_fit_space
    from translators.unsupervised import DEFAULTS, _relative_pairs_start

    x, y, xt, yt = _rotation_problem(out_dim=384)
    rot = random_semi_orthogonal(384, 384, seed=11)
    ms, mt = side_stats(x)["mean"], side_stats(y)["mean"]
    known = shared_data.embeddings("minilm", shared_data.split()["B"][:5])  # texts outside x and the test rows
    pairs_f = (to_fit_space(known, ms), to_fit_space(known @ rot, mt))
    xf, yf, xtf, ytf = to_fit_space(x, ms), to_fit_space(y, mt), to_fit_space(xt, ms), to_fit_space(yt, mt)

    def top1(w):
        return float(np.mean(np.argmax(unit(xtf @ w) @ ytf.T, axis=1) == np.arange(len(xtf))))

    assert top1(_relative_pairs_start(xf, yf, pairs_f, DEFAULTS)) > 0.99
    assert top1(procrustes(*pairs_f)) < 0.1
