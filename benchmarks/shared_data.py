"""Access to the reference embeddings in ../shared/data (real texts, real encoders) for tests and benchmarks.

Located by $V2V_SHARED_DATA, else `<repo>/../shared/data`, else `<repo>/shared/data`.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


# The reason every test gives when it skips for want of the data; under CI that skip is turned into a failure
# (tests/conftest.py), since a CI run without the data would pass while running a fraction of the suite.
MISSING = "shared reference data not found"


def in_ci() -> bool:
    """True under a CI runner (CI set to anything but empty/0/false/no, as GitHub Actions and GitLab set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def data_root() -> Path | None:
    candidates = [os.environ.get("V2V_SHARED_DATA"), REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "pypi" / "info.json").exists():
            return Path(c)
    return None


def corpus_dir(corpus: str = "pypi") -> Path:
    root = data_root()
    if root is None:
        raise FileNotFoundError("shared reference data not found; set V2V_SHARED_DATA to the folder holding pypi/")
    return root / corpus


@lru_cache(maxsize=None)
def info(corpus: str = "pypi") -> dict:
    return json.loads((corpus_dir(corpus) / "info.json").read_text())


def embeddings(model: str, rows=None, corpus: str = "pypi") -> np.ndarray:
    """float32 (n, dim) unit rows of `model`; `rows` an index array (None = every row the model covers)."""
    arr = np.load(corpus_dir(corpus) / f"{model}.f16.npy", mmap_mode="r")
    out = arr if rows is None else arr[np.asarray(rows)]
    return np.asarray(out, dtype=np.float32)


def split(corpus: str = "pypi") -> dict[str, np.ndarray]:
    """{'test', 'A', 'B'}: row indices (see the data README for the protocol)."""
    with np.load(corpus_dir(corpus) / "split.npz") as z:
        return {k: z[k] for k in z.files}


def texts(rows=None, corpus: str = "pypi") -> list[dict]:
    want = None if rows is None else set(int(r) for r in rows)
    out = []
    with open(corpus_dir(corpus) / "texts.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if want is None or row["row"] in want:
                out.append(row)
    return out
