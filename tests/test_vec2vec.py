"""vec2vec: deterministic training, unsupervised early stopping that fires, exact save/load, typed errors.

Real data (../shared/data, minilm -> e5, unpaired halves A and B); tiny networks so the file runs in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import shared_data  # noqa: E402
from translators.errors import TrainingError  # noqa: E402

TINY = dict(d_adapter=64, d_hidden=64, adapter_depth=2, transform_depth=2, batch_size=64, eval_size=256,
            time_budget_s=None, device="cpu")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _no_time(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history]


@pytest.fixture(scope="module")
def data():
    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found (set V2V_SHARED_DATA)")
    sp = shared_data.split()
    return {"source": shared_data.embeddings("minilm", sp["A"][:1500]),
            "target": shared_data.embeddings("e5", sp["B"][:1500]),
            "test_source": shared_data.embeddings("minilm", sp["test"][:256])}


def _fit(data, **kw):
    from translators.vec2vec import fit_vec2vec

    return fit_vec2vec(data["source"], data["target"], **dict(TINY, **kw))


def test_training_is_deterministic_for_a_seed(data):
    a = _fit(data, seed=3, max_steps=6, eval_every=3)
    b = _fit(data, seed=3, max_steps=6, eval_every=3)
    c = _fit(data, seed=4, max_steps=6, eval_every=3)
    x = data["test_source"]
    assert np.array_equal(a(x), b(x))
    assert not np.allclose(a(x), c(x))
    assert _no_time(a.metrics["history"]) == _no_time(b.metrics["history"])


def test_outputs_live_in_raw_target_space(data):
    t = _fit(data, seed=0, max_steps=4, eval_every=2)
    y = t(data["test_source"])
    assert y.shape == (256, 384) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)  # e5 vectors are unit length
    # the target mean is restored: translations sit in the target's cone, not around the origin
    assert float(np.mean(y @ data["target"].mean(0))) > 0.5


def test_early_stopping_fires_on_a_plateau(data):
    # lr=0: the translator cannot change, so the unsupervised criterion is flat from the first evaluation on
    t = _fit(data, seed=0, lr=0.0, max_steps=200, eval_every=2, patience=3, min_delta=1e-6)
    h = t.metrics["health"]
    assert h["stopped_early"] is True
    assert h["steps"] == 2 * (1 + 3) < 200        # first eval sets the best, three flat ones stop it
    assert h["best_step"] == 2
    assert {"score", "csls_cos", "mutual_share", "cycle_cos"} <= set(h)


def test_early_stopping_restores_the_best_weights(data):
    """The returned translator is the network as it was at the best evaluation, not the last one: a monitor
    records the network's outputs at every evaluation (it never steers training), and the translator must
    reproduce the best evaluation's outputs exactly and differ from the last one's."""
    x, outputs = data["test_source"], []

    def record(network):
        outputs.append(network(x))
        return {}

    t = _fit(data, seed=1, max_steps=12, eval_every=3, patience=100, lr=1e-3, monitor=record)
    hist = t.metrics["history"]
    scores = [e["score"] for e in hist]
    best = int(np.argmax(scores))
    assert [e["step"] for e in hist] == [3, 6, 9, 12] and len(outputs) == 4
    assert best != len(hist) - 1, f"seed 1 no longer peaks before the end ({scores}): pick a seed that does"
    assert t.metrics["health"]["best_step"] == hist[best]["step"] == 3 * (best + 1)
    assert t.metrics["health"]["stopped_early"] is False and t.metrics["health"]["steps"] == 12
    got = t(x)
    np.testing.assert_allclose(got, outputs[best], atol=1e-6)       # the best evaluation's weights...
    assert np.abs(got - outputs[-1]).max() > 1e-3                  # ...not the last step's
    assert t.metrics["health"]["score"] == pytest.approx(scores[best], abs=1e-6)  # re-evaluated after restoring


def test_save_load_gives_bit_identical_outputs(data, tmp_path):
    from translators import load_translator

    t = _fit(data, seed=0, max_steps=4, eval_every=2)
    t.save(tmp_path / "v2v")
    loaded = load_translator(tmp_path / "v2v")
    x = data["test_source"]
    assert loaded.config["arch"] == "vec2vec"
    assert np.array_equal(t(x), loaded(x))
    assert loaded.fingerprint == t.fingerprint


def test_fit_dispatch_reaches_vec2vec(data):
    from translators import fit

    t = fit(data["source"], data["target"], method="vec2vec", seed=0, **{k: v for k, v in TINY.items()
                                                                          if k != "device"}, device="cpu",
            max_steps=2, eval_every=2)
    assert t.method == "vec2vec" and t.target_dim == 384


@pytest.mark.parametrize("bad", ["few", "nan"])
def test_bad_training_input_raises_typed_error(data, bad):
    from translators.vec2vec import fit_vec2vec

    src = data["source"][:40] if bad == "few" else data["source"].copy()
    if bad == "nan":
        src[5, 3] = np.nan
    with pytest.raises(TrainingError) as e:
        fit_vec2vec(src, data["target"], **dict(TINY, max_steps=2))
    assert e.value.fix


@pytest.mark.gpu
def test_gpu_and_cpu_outputs_agree(data):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    t = _fit(data, seed=0, max_steps=20, eval_every=10, device="cuda", bf16=True)
    x = data["test_source"]
    on_cpu = t.to("cpu")(x)
    on_gpu = t.to("cuda")(x)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
