"""Loading a translator directory: JSON config + safetensors weights, never a pickle.

`load_translator` is the one loader: the CLI, the apply engines, the report and the Python API call it.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from translators.errors import TranslatorFileError

# Modules that register further architectures when imported; imported only when a config names an arch
# not yet registered, so loading a linear map stays light.
_ARCH_MODULES = ("translators.vec2vec", "translators.refine")
_REBUILD = "re-run `v2v-migrate train` to write a fresh translator directory."


def register_optional_arches() -> None:
    for name in _ARCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # that method is not installed in this build; the unknown-arch error below says so


def _read_json(path: Path, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise TranslatorFileError(f"translator directory {str(path.parent)!r} has no {path.name}, so it is "
                                      "not a (complete) translator directory.",
                                      "point --translator at the folder written by `v2v-migrate train --out`.")
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise TranslatorFileError(f"{path} is not valid JSON ({e}).", _REBUILD) from None
    if not isinstance(data, dict):
        raise TranslatorFileError(f"{path} does not hold a JSON object.", _REBUILD)
    return data


def load_translator(path, device: str = "cpu"):
    """Read `path` (config.json + model.safetensors [+ metrics.json]) into a Translator on `device`.

    device: 'cpu' (default), 'cuda', or 'auto' (the GPU when torch sees one). The result is a callable
    float32 (n, d_src) -> float32 (n, d_tgt).
    """
    path = Path(path)
    if not path.is_dir():
        raise TranslatorFileError(f"translator directory {str(path)!r} does not exist.",
                                  "train one first (v2v-migrate train ... --out DIR) or fix --translator.")
    config = _read_json(path / "config.json", required=True)
    weights_file = path / "model.safetensors"
    if not weights_file.is_file():
        raise TranslatorFileError(f"translator directory {str(path)!r} has no model.safetensors.", _REBUILD)
    metrics = _read_json(path / "metrics.json", required=False)
    if "arch" not in config:
        raise TranslatorFileError(f"{path / 'config.json'} has no 'arch' entry.", _REBUILD)

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from translators.model import ARCHES, Translator

    arch = config["arch"]
    if arch not in ARCHES:
        register_optional_arches()
    if arch not in ARCHES:
        raise TranslatorFileError(f"translator architecture {arch!r} is unknown to this version "
                                  f"(known: {', '.join(sorted(ARCHES))}).",
                                  "upgrade v2v-migrate to the version that wrote it, or retrain.")
    try:
        module = ARCHES[arch](config)
        module.load_state_dict(load_file(str(weights_file), device="cpu"), strict=True)
    except (SafetensorError, RuntimeError, KeyError, ValueError, TypeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TranslatorFileError(f"{weights_file} is corrupt or does not fit its config ({first}).",
                                  _REBUILD) from None
    return Translator(config, module, metrics).to(device)
