"""The Translator object every method returns, its architectures registry, and saving.

A translator directory holds `config.json` (JSON only), `model.safetensors` (the module's state_dict) and
`metrics.json`. Loading (translators.io) rebuilds `ARCHES[config['arch']](config)` and loads the tensors
strictly, so an architecture is fully described by its config plus its tensors: never pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from translators.arrays import as_matrix, unit_t
from translators.errors import TranslatorFileError, TranslatorUsageError

ARCHES: dict[str, type] = {}
# Keys that describe the environment a translator was saved in, not the translator: left out of the
# fingerprint so that saving (which records them) does not change it.
_UNFINGERPRINTED = ("library_versions",)


def register_arch(name: str):
    """Class decorator: make `name` loadable as ARCHES[name](config)."""

    def deco(cls):
        ARCHES[name] = cls
        cls.arch_name = name
        return cls

    return deco



@register_arch("linear")
class LinearMap(torch.nn.Module):
    """y = post(pre(x) @ W): every linear method ('auto', procrustes, ridge, identity, random).

    pre:  optional L2 normalisation, subtract the source mean, optional L2 normalisation again
          (the space Procrustes/ridge were fitted in).
    post: optionally rescale each output to `target_scale` (the mean norm of centred target vectors), add the
          target mean back, and optionally rescale to `output_norm` (the target model's typical vector norm,
          1.0 for unit-length models), so outputs live in the RAW target space next to true target vectors.
    """

    def __init__(self, config: dict):
        super().__init__()
        ds, dt = int(config["source_dim"]), int(config["target_dim"])
        self.normalize_input = bool(config.get("normalize_input", False))
        self.normalize_centered = bool(config.get("normalize_centered", False))
        scale = config.get("target_scale")
        self.target_scale = None if scale is None else float(scale)
        norm = config.get("output_norm")
        self.output_norm = None if norm is None else float(norm)
        self.register_buffer("source_mean", torch.zeros(ds))
        self.register_buffer("target_mean", torch.zeros(dt))
        self.register_buffer("weight", torch.zeros(ds, dt))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_input:
            x = unit_t(x)
        x = x - self.source_mean
        if self.normalize_centered:
            x = unit_t(x)
        z = x @ self.weight
        if self.target_scale is not None:
            z = unit_t(z) * self.target_scale
        y = z + self.target_mean
        return y if self.output_norm is None else unit_t(y) * self.output_norm


def resolve_device(device: str | None) -> str:
    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TranslatorUsageError(f"device {device!r} asked for but no CUDA GPU is visible.",
                             "use --device cpu (or auto).")
        return d
    if d != "cpu":
        raise TranslatorUsageError(f"unknown device {device!r}.", "use auto, cpu or cuda.")
    return d


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> python, so configs and metrics always serialise."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN/inf
    return obj


def package_version() -> str:
    """The installed v2v-migrate distribution's version ("unknown" when running from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("v2v-migrate")
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict:
    import safetensors

    return {"v2v_migrate": package_version(), "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__}


class Translator:
    """A fitted map from source-model vectors to target-model vectors: call it on float32 (n, d_s)."""

    def __init__(self, config: dict, module: torch.nn.Module, metrics: dict | None = None):
        for key in ("arch", "source_dim", "target_dim"):
            if key not in config:
                raise TranslatorFileError(f"translator config lacks {key!r}.", "rebuild the translator with fit().")
        self.config = _jsonable(dict(config))
        self.module = module.eval()
        self.metrics = _jsonable(dict(metrics or {}))
        tensors = list(module.parameters()) + list(module.buffers())
        self.device = tensors[0].device.type if tensors else "cpu"

    @property
    def source_dim(self) -> int:
        return int(self.config["source_dim"])

    @property
    def target_dim(self) -> int:
        return int(self.config["target_dim"])

    @property
    def method(self) -> str:
        return str(self.config.get("method", self.config["arch"]))

    def __call__(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        x = as_matrix(x, dim=self.source_dim, where="translator input")
        if not x.flags.writeable:  # torch.from_numpy wants writable memory (Arrow and mmap views are not)
            x = x.copy()
        out = np.empty((len(x), self.target_dim), dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(x), max(1, int(batch_size))):
                chunk = torch.from_numpy(x[b:b + batch_size]).to(self.device)
                out[b:b + batch_size] = self.module(chunk).float().cpu().numpy()
        return out

    def to(self, device: str) -> "Translator":
        self.device = resolve_device(device)
        self.module.to(self.device)
        return self

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.module.state_dict().items()}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        cfg = {k: v for k, v in self.config.items() if k not in _UNFINGERPRINTED}
        h.update(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())
        for name, t in sorted(self.state_tensors().items()):
            h.update(f"{name}:{tuple(t.shape)}:".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def save(self, path) -> None:
        """Write the directory atomically: a sibling temp dir renamed into place (old one replaced)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.config["library_versions"] = library_versions()
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True))
            save_file(self.state_tensors(), str(tmp / "model.safetensors"),
                      metadata={"fingerprint": self.fingerprint})
            (tmp / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True))
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def __repr__(self) -> str:
        return f"Translator({self.method}: {self.source_dim} -> {self.target_dim}, {self.fingerprint[:12]})"


def linear_translator(weight: np.ndarray, source_mean: np.ndarray, target_mean: np.ndarray,
                      config: dict, metrics: dict | None = None) -> Translator:
    """Build a Translator around LinearMap from numpy parameters (config carries the flags)."""
    cfg = dict(config, arch="linear", source_dim=int(weight.shape[0]), target_dim=int(weight.shape[1]))
    module = LinearMap(cfg)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
        module.source_mean.copy_(torch.from_numpy(np.ascontiguousarray(source_mean, dtype=np.float32)))
        module.target_mean.copy_(torch.from_numpy(np.ascontiguousarray(target_mean, dtype=np.float32)))
    return Translator(cfg, module, metrics)
