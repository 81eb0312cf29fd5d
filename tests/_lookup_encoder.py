"""A real `python:MODULE:FUNCTION` encoder for tests: the shared reference data's own vectors of each text.

The shared data's vectors ARE the real models' outputs for these texts (see ../shared/data/README.md), so
`python:_lookup_encoder:minilm` is all-MiniLM-L6-v2 without the model's CPU cost. Every text it was asked
for is recorded in SEEN, which lets tests check independently which rows train and report embedded.
Not a test module (leading underscore)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

import shared_data

SEEN: list[str] = []


@lru_cache(maxsize=1)
def _row_of_text() -> dict[str, int]:
    return {r["text"]: r["row"] for r in shared_data.texts()}


def _lookup(model: str, texts: list[str]) -> np.ndarray:
    SEEN.extend(texts)
    rows = [_row_of_text()[t] for t in texts]
    return shared_data.embeddings(model, rows)


def minilm(texts: list[str]) -> np.ndarray:
    return _lookup("minilm", texts)


def e5(texts: list[str]) -> np.ndarray:
    return _lookup("e5", [t.removeprefix("passage: ") for t in texts])
