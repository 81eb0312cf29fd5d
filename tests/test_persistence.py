"""A saved translator is bit-exact across processes: fitted and saved in one process, loaded and applied by
the CLI in another, its output has the same bytes as the fitting process's own output and as an in-process
load. A refit with the same seed in a third process (this one) gives the same fingerprint and bytes.

Real embeddings (minilm -> l3, two related 384-d models) so that `auto` has real structure to find.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _workflow_helpers import cli_env, need_data, rows_of, run_cli

# `auto` kept small (as in test_translators.py): a few seconds on 2 cores.
FAST_AUTO = dict(restarts=0, sample=1200, final_sample=1200, profile_sample=1200, eval_sample=400, iterations=4,
                 final_iterations=2)

FIT_SCRIPT = """
import json, sys
import numpy as np
from translators import fit
d, method, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
pairs = (np.load(d + "/px.npy"), np.load(d + "/py.npy")) if method == "ridge" else None
t = fit(np.load(d + "/xa.npy"), np.load(d + "/yb.npy"), method=method, pairs=pairs, seed=3, device="cpu", **options)
np.save(d + "/fit_out.npy", t(np.load(d + "/xt.npy")))
t.save(d + "/translator")
print(t.fingerprint)
"""


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    need_data()
    import shared_data

    a, b, test = rows_of("A", 0, 1500), rows_of("B", 0, 1500), rows_of("test", 0, 300)
    return {"xa": shared_data.embeddings("minilm", a), "yb": shared_data.embeddings("l3", b),
            "px": shared_data.embeddings("minilm", b[:1200]), "py": shared_data.embeddings("l3", b[:1200]),
            "xt": shared_data.embeddings("minilm", test)}


# `auto` takes minutes on a busy 2-core machine (two fits): slow; ridge runs by default.
@pytest.mark.parametrize("method", ["ridge", pytest.param("auto", marks=pytest.mark.slow)])
def test_save_load_is_bit_exact_across_processes(arrays, tmp_path, method):
    from translators import fit, load_translator

    for name, arr in arrays.items():
        np.save(tmp_path / f"{name}.npy", arr)
    options = FAST_AUTO if method == "auto" else {}
    fitted = subprocess.run([sys.executable, "-c", FIT_SCRIPT, str(tmp_path), method, json.dumps(options)],
                            env=cli_env(), capture_output=True, text=True, timeout=300)
    assert fitted.returncode == 0, fitted.stderr
    fingerprint = fitted.stdout.strip().splitlines()[-1]
    # another process loads and translates, through the CLI as users do
    res = run_cli(["translate", "--translator", str(tmp_path / "translator"), "--input", str(tmp_path / "xt.npy"),
                   "--output", str(tmp_path / "cli_out.npy"), "--device", "cpu", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    fit_out, cli_out = np.load(tmp_path / "fit_out.npy"), np.load(tmp_path / "cli_out.npy")
    assert fit_out.dtype == cli_out.dtype == np.float32 and fit_out.shape == (300, 384)
    assert cli_out.tobytes() == fit_out.tobytes()
    loaded = load_translator(tmp_path / "translator", "cpu")
    assert loaded.fingerprint == fingerprint
    assert loaded(arrays["xt"]).tobytes() == fit_out.tobytes()
    # the same fit in this process: deterministic for a seed, so the same parameters and bytes
    pairs = (arrays["px"], arrays["py"]) if method == "ridge" else None
    again = fit(arrays["xa"], arrays["yb"], method=method, pairs=pairs, seed=3, device="cpu", **options)
    assert again.fingerprint == fingerprint
    assert again(arrays["xt"]).tobytes() == fit_out.tobytes()
    # and the output is a real translation, not a constant: each row is nearest its own true l3 vector
    import shared_data

    truth = shared_data.embeddings("l3", rows_of("test", 0, 300))
    norm = fit_out / np.linalg.norm(fit_out, axis=1, keepdims=True)
    assert (np.argmax(norm @ truth.T, axis=1) == np.arange(300)).mean() > 0.5  # chance: 1/300
