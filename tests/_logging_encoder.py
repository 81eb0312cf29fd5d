"""A `python:_logging_encoder:e5` encoder for tests that run the CLI in subprocesses: the shared data's real
e5 vectors of each text (as _lookup_encoder), and every text it embeds appended, as its reference row number,
to the file named by $V2V_TEST_ENCODE_LOG, so that a test can count across processes (killed ones included)
which rows were embedded, and how often. Not a test module (leading underscore)."""
from __future__ import annotations

import os

import _lookup_encoder


def e5(texts: list[str]) -> "object":
    y = _lookup_encoder.e5(texts)  # raises for a text the data does not hold: nothing is logged then
    rows = _lookup_encoder._row_of_text()
    with open(os.environ["V2V_TEST_ENCODE_LOG"], "a", encoding="utf-8") as f:
        f.write("".join(f"{rows[t.removeprefix('passage: ')]}\n" for t in texts))
        f.flush()
    return y
