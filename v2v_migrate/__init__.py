"""v2v-migrate: move a vector database to a new embedding model without re-embedding the source text."""
from __future__ import annotations

__version__ = "0.1.0"


def load_translator(path: str):
    """Load a translator directory; returns a callable float32 (n, d_src) -> float32 (n, d_tgt)."""
    from translators.io import load_translator as _load

    return _load(path)


__all__ = ["__version__", "load_translator"]
