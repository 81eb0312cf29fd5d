"""Row provenance in the destination: which rows hold a translated vector and which a true new-model one.

An embedded row carries the payload key MARKER (`_v2v_embedded`) whose value names the model that embedded
it (`model_identity`: the encoder spec without credentials, plus its prefix). A translated row has no such
key (or None: Parquet-backed payloads read a missing key back as None). The mark lives in the row itself,
so it moves with the destination, survives a lost state folder, and is cleared by whatever rewrites the row
from the source: `apply --incremental` translating a changed row again writes the source payload, without
the mark, so `reembed` embeds that row again on its next pass. Keys starting with `_v2v` are ours
(see connectors.base.ORIGINAL_ID_KEY); the encoders' text-field detection ignores them.
"""
from __future__ import annotations

import numpy as np

from connectors.base import Batch

MARKER = "_v2v_embedded"


def model_identity(encoder) -> str:
    """What the mark records: the encoder's name (a spec without credentials) and its prefix, if any."""
    prefix = getattr(encoder, "prefix", "") or ""
    return encoder.name + (f" prefix={prefix!r}" if prefix else "")


def embedded_by(payload) -> str | None:
    """The model that embedded this destination row, or None for a translated row."""
    value = payload.get(MARKER) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def marked(payload, identity: str) -> dict:
    """The payload with the mark set (the caller's dict is not changed)."""
    return {**(payload or {}), MARKER: identity}


def embed_where_text(batch: Batch, translated: np.ndarray, encoder, field: str, identity: str,
                     dim: int) -> tuple[Batch, int]:
    """`apply --encoder`: rows with text get the encoder's vector and the mark, the others keep their
    translated vector. Returns (batch to write, rows embedded)."""
    from v2v_migrate.encoders import texts_of

    texts = texts_of(batch.payloads, field)
    rows = [i for i, t in enumerate(texts) if t is not None]
    if not rows:
        return batch.with_vectors(translated), 0
    out = np.array(translated, dtype=np.float32, copy=True)
    out[rows] = encoder.encode([texts[i] for i in rows], expected_dim=dim)
    pays = list(batch.payloads)
    for i in rows:
        pays[i] = marked(pays[i], identity)
    return Batch(batch.ids, out, pays, batch.cursor, dict(batch.extra)), len(rows)
