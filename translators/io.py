"""Loading a translator directory: JSON config + safetensors weights, never a pickle."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from v2v_migrate.errors import TranslatorError

# Modules that register further architectures when imported (written by other parts of the project);
# imported only when a config names an arch not yet registered, so loading a linear map stays light.
_ARCH_MODULES = ("translators.vec2vec", "translators.refine")
_REBUILD = "re-run `v2v-migrate train` to write a fresh translator directory."


def _register_optional_arches() -> None:
    for name in _ARCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # that method is not installed in this build; the unknown-arch error below says so


def load_translator(path):
    """Read `path` (config.json + model.safetensors [+ metrics.json]) into a Translator on CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from translators.model import ARCHES, Translator

    path = Path(path)
    if not path.is_dir():
        raise TranslatorError(f"translator directory {str(path)!r} does not exist.",
                              "pass the folder written by `v2v-migrate train --out`.")
    cfg_file, weights_file, metrics_file = path / "config.json", path / "model.safetensors", path / "metrics.json"
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise TranslatorError(f"translator directory {str(path)!r} has no {f.name}.", _REBUILD)
    try:
        config = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise TranslatorError(f"{cfg_file} is not valid JSON ({e}).", _REBUILD) from None
    if not isinstance(config, dict) or "arch" not in config:
        raise TranslatorError(f"{cfg_file} has no 'arch' entry.", _REBUILD)
    arch = config["arch"]
    if arch not in ARCHES:
        _register_optional_arches()
    if arch not in ARCHES:
        raise TranslatorError(f"translator architecture {arch!r} is unknown to this version "
                              f"(known: {', '.join(sorted(ARCHES))}).",
                              "upgrade v2v-migrate to the version that wrote it, or retrain.")
    metrics = {}
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise TranslatorError(f"{metrics_file} is not valid JSON ({e}).", _REBUILD) from None
    try:
        module = ARCHES[arch](config)
        state = load_file(str(weights_file), device="cpu")
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, KeyError, ValueError, TypeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TranslatorError(f"{weights_file} is corrupt or does not fit its config ({first}).", _REBUILD) from None
    return Translator(config, module, metrics)
