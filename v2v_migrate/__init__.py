"""v2v-migrate: move a vector database to a new embedding model without re-embedding the source text.

The app (CLI, plan, train workflow, apply engines, report) on top of two libraries that know nothing of
it: `connectors` (stores) and `translators` (maps between embedding spaces).
"""
from __future__ import annotations

__version__ = "0.4.0"


def load_translator(path, device: str = "cpu"):
    """Load a translator directory; returns a callable float32 (n, d_src) -> float32 (n, d_tgt)."""
    from translators import load_translator as load

    return load(path, device)


__all__ = ["__version__", "load_translator"]
