"""Connectors: one module per engine, all implementing `connectors.base.Store`.

`open_store(uri, **options)` picks the module by the URI's scheme and imports it lazily, so that using
FAISS never imports pymilvus or qdrant_client.
"""
from __future__ import annotations

import importlib
from typing import Any

from connectors.base import ORIGINAL_ID_KEY, Batch, Store, check_metric, validate_vectors
from connectors.errors import UnknownSchemeError

# scheme -> (module, class name). Modules are imported on first use.
_REGISTRY: dict[str, tuple[str, str]] = {
    "faiss": ("connectors.faiss_store", "FaissStore"),
    "parquet": ("connectors.parquet_store", "ParquetStore"),
    "milvus": ("connectors.milvus_store", "MilvusStore"),
    "qdrant": ("connectors.qdrant_store", "QdrantStore"),
    "qdrant-edge": ("connectors.qdrant_edge_store", "QdrantEdgeStore"),
}


def split_uri(uri: str) -> tuple[str, str]:
    """'faiss:/data/x.index' -> ('faiss', '/data/x.index')."""
    scheme, sep, rest = str(uri).partition(":")
    if not sep or scheme not in _REGISTRY:
        known = ", ".join(f"{s}:" for s in _REGISTRY)
        raise UnknownSchemeError(
            f"Unknown store URI {uri!r}.",
            f"start it with one of {known} (e.g. faiss:index.faiss, milvus:demo.db#docs, "
            "qdrant:./qdrant#docs, parquet:./vectors/).",
        )
    return scheme, rest


def open_store(uri: str, **options: Any) -> Store:
    """Open (not create) the store at `uri`. Writable stores are created with `store.create(...)`."""
    scheme, rest = split_uri(uri)
    module_name, class_name = _REGISTRY[scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(uri, **options)


__all__ = ["Batch", "Store", "open_store", "split_uri", "check_metric", "validate_vectors", "ORIGINAL_ID_KEY"]
