"""Qdrant collections (qdrant-client: local mode and servers) and Qdrant Edge shards as `connectors.schema`
descriptions, the configuration to create one from a description, and filters in Qdrant's JSON syntax.

Described: every named dense vector (size, distance, HNSW m / ef_construct), sparse vectors (IDF modifier),
payload indexes, and the collection's HNSW and optimizer settings (`engine_config`, which the other
Qdrant flavour reads too). qdrant-client's local mode keeps neither payload indexes nor collection-level
HNSW and optimizer settings (it reports its defaults); a server and Qdrant Edge keep all of it.
"""
from __future__ import annotations

import json
from typing import Any

from connectors.errors import StoreUsageError
from connectors.qdrant_common import DISTANCE_TO_METRIC, METRIC_TO_DISTANCE

HNSW_KEYS = ("m", "ef_construct", "full_scan_threshold", "payload_m", "on_disk")
EDGE_OPTIMIZER_KEYS = ("deleted_threshold", "vacuum_min_vector_number", "default_segment_number",
                       "max_segment_size", "indexing_threshold")
CLIENT_OPTIMIZER_KEYS = EDGE_OPTIMIZER_KEYS + ("memmap_threshold", "flush_interval_sec", "max_optimization_threads")


def _plain(obj) -> dict:
    """A config object (pydantic model or dict) as a dict without None values."""
    if obj is None:
        return {}
    data = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    return {k: v for k, v in data.items() if v is not None}


def _index(hnsw: dict) -> dict:
    out = {"type": "hnsw"}
    if hnsw.get("m") is not None:
        out["m"] = int(hnsw["m"])
    if hnsw.get("ef_construct") is not None:
        out["ef_construction"] = int(hnsw["ef_construct"])
    return out


def _hnsw_from_index(index: dict | None) -> dict:
    """Per-vector HNSW settings from a neutral INDEX (written per vector: local mode keeps only those)."""
    out = {}
    if (index or {}).get("type") == "hnsw":
        if index.get("m") is not None:
            out["m"] = int(index["m"])
        if index.get("ef_construction") is not None:
            out["ef_construct"] = int(index["ef_construction"])
    return out


def _vector_params(description: dict, dim: int, metric: str, dense, sparse) -> tuple[dict, dict]:
    """({name: dense params}, {name: sparse params}) of a description, built by either binding's
    dense(size, metric, index) and sparse(modifier); the migrated vector gets dim and metric."""
    name = description.get("vector") or ""
    vectors = {name: dense(dim, metric, description["vectors"].get(name, {}).get("index"))}
    sparses = {}
    for n, spec in description["vectors"].items():
        if n == name:
            continue
        if spec["kind"] == "sparse":
            sparses[n] = sparse(spec.get("modifier"))
        else:
            vectors[n] = dense(spec["dim"], spec["metric"], spec.get("index"))
    return vectors, sparses


def describe(engine: str, name: str, dense: dict, sparse: dict, hnsw: dict, optimizers: dict,
             payload_indexes: dict) -> dict:
    """dense: {name: {'size', 'distance', 'hnsw_config'?}}; sparse: {name: {'modifier'?}} (plain dicts)."""
    vectors: dict[str, dict] = {}
    for n, params in dense.items():
        distance = getattr(params["distance"], "value", params["distance"])
        effective = {**hnsw, **_plain(params.get("hnsw_config"))}
        vectors[n] = {"kind": "dense", "dim": int(params["size"]), "metric": DISTANCE_TO_METRIC.get(
            str(distance), str(distance).lower()), "index": _index(effective)}
    for n, params in sparse.items():
        modifier = getattr(params.get("modifier"), "value", params.get("modifier"))
        vectors[n] = {"kind": "sparse", "index": {}, "modifier": str(modifier).lower() if modifier else None}
    out = {"engine": engine, "vector": name, "vectors": vectors}
    if engine != "qdrant-local":  # local mode reports its defaults, not the collection's settings
        out["engine_config"] = {"hnsw": {k: hnsw[k] for k in HNSW_KEYS if hnsw.get(k) is not None},
                                "optimizers": {k: optimizers[k] for k in CLIENT_OPTIMIZER_KEYS
                                               if optimizers.get(k) is not None}}
    if payload_indexes:
        out["payload_indexes"] = dict(payload_indexes)
    return out


def index_kind(data_type) -> str:
    """A payload index's type ('keyword', 'integer', ...) from either binding's enum."""
    value = getattr(data_type, "value", None)
    return (value if isinstance(value, str) else str(data_type).rsplit(".", 1)[-1]).lower()


# -- qdrant-client ---------------------------------------------------------------------------------------
def describe_client(engine: str, name: str | None, info) -> dict:
    params = info.config.params
    dense = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
    return describe(engine, name or "", {n: _plain(v) for n, v in dense.items()},
                    {n: _plain(v) for n, v in (params.sparse_vectors or {}).items()},
                    _plain(info.config.hnsw_config), _plain(info.config.optimizer_config),
                    {f: index_kind(i.data_type) for f, i in (info.payload_schema or {}).items()})


def client_create_kwargs(description: dict, dim: int, metric: str) -> dict:
    """create_collection() keyword arguments for a described collection (migrated vector: dim, metric)."""
    from qdrant_client import models

    config = description.get("engine_config") or {}
    hnsw = config.get("hnsw") or {}

    def dense(size, metric_name, index):
        per_vector = _hnsw_from_index(index)
        return models.VectorParams(size=int(size), distance=models.Distance(METRIC_TO_DISTANCE[metric_name]),
                                   hnsw_config=models.HnswConfigDiff(**per_vector) if per_vector else None)

    vectors, sparse = _vector_params(description, dim, metric, dense, lambda modifier: models.SparseVectorParams(
        modifier=models.Modifier(modifier) if modifier else None))
    kw: dict[str, Any] = {"vectors_config": vectors[""] if list(vectors) == [""] else vectors}
    if sparse:
        kw["sparse_vectors_config"] = sparse
    if hnsw:
        kw["hnsw_config"] = models.HnswConfigDiff(**{k: hnsw[k] for k in HNSW_KEYS if k in hnsw})
    optimizers = {k: v for k, v in (config.get("optimizers") or {}).items() if k in CLIENT_OPTIMIZER_KEYS}
    if optimizers:
        kw["optimizers_config"] = models.OptimizersConfigDiff(**optimizers)
    return kw


def client_filter(spec):
    """A qdrant_client Filter from Qdrant's JSON filter syntax (str or dict); None for none."""
    data = _filter_data(spec)
    if data is None:
        return None
    from qdrant_client import models

    try:
        return models.Filter.model_validate(data)
    except ValueError as e:
        raise StoreUsageError(f"filter= is not a Qdrant filter: {str(e).splitlines()[0]}",
                              'write it in Qdrant\'s JSON syntax, e.g. {"must": [{"key": "tenant", '
                              '"match": {"value": "a"}}]}.') from None


def _filter_data(spec):
    if spec in (None, "", {}):
        return None
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as e:
            raise StoreUsageError(f"filter= is not JSON ({e}).", 'write it in Qdrant\'s JSON filter syntax, e.g. '
                                  '{"must": [{"key": "tenant", "match": {"value": "a"}}]}.') from None
    if not isinstance(spec, dict):
        raise StoreUsageError("filter= must be a JSON object.", 'e.g. {"must": [{"key": "tenant", "match": '
                              '{"value": "a"}}]}.')
    return spec


# -- Qdrant Edge -----------------------------------------------------------------------------------------
def describe_edge(name: str, config: dict, payload_schema: dict) -> dict:
    return describe("qdrant-edge", name, config.get("vectors") or {}, config.get("sparse_vectors") or {},
                    _plain(config.get("hnsw_config")), _plain(config.get("optimizers")),
                    {f: index_kind(i.data_type) for f, i in payload_schema.items()})


def edge_config(description: dict, dim: int, metric: str):
    """An EdgeConfig for a described shard (migrated vector: dim, metric)."""
    import qdrant_edge as q

    config = description.get("engine_config") or {}
    hnsw = config.get("hnsw") or {}
    full = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, **hnsw}

    def dense(size, metric_name, index):
        per_vector = _hnsw_from_index(index)
        return q.EdgeVectorParams(size=int(size), distance=getattr(q.Distance, METRIC_TO_DISTANCE[metric_name]),
                                  hnsw_config=q.HnswIndexConfig(**{**{k: full[k] for k in ("m", "ef_construct",
                                  "full_scan_threshold")}, **per_vector}) if per_vector else None)

    vectors, sparse = _vector_params(description, dim, metric, dense, lambda modifier: q.EdgeSparseVectorParams(
        modifier=q.Modifier.Idf if modifier == "idf" else None))
    kw: dict[str, Any] = {"vectors": vectors[""] if list(vectors) == [""] else vectors}
    if sparse:
        kw["sparse_vectors"] = sparse
    if hnsw:
        kw["hnsw_config"] = q.HnswIndexConfig(**{k: full[k] for k in ("m", "ef_construct", "full_scan_threshold")},
                                              **{k: hnsw[k] for k in ("payload_m", "on_disk") if k in hnsw})
    optimizers = {k: v for k, v in (config.get("optimizers") or {}).items() if k in EDGE_OPTIMIZER_KEYS}
    if optimizers:
        kw["optimizers"] = q.EdgeOptimizersConfig(**optimizers)
    return q.EdgeConfig(**kw)


def edge_payload_index(kind: str):
    import qdrant_edge as q

    return getattr(q.PayloadSchemaType, kind.capitalize())


def edge_filter(spec):
    """A qdrant_edge Filter from Qdrant's JSON filter syntax: must / should / must_not / min_should, with
    field conditions (match value / any / except / text, range, values_count), is_empty, is_null, has_id,
    nested and nested filters. None for none."""
    data = _filter_data(spec)
    return None if data is None else _edge_filter(data)


def _edge_filter(data: dict):
    import qdrant_edge as q

    def conditions(value):
        return [_edge_condition(c) for c in (value if isinstance(value, list) else [value])]

    kw = {k: conditions(data[k]) for k in ("must", "should", "must_not") if data.get(k) is not None}
    if data.get("min_should"):
        kw["min_should"] = q.MinShould(conditions(data["min_should"]["conditions"]),
                                       int(data["min_should"]["min_count"]))
    unknown = set(data) - {"must", "should", "must_not", "min_should"}
    if unknown:
        raise StoreUsageError(f"filter= has unknown keys {', '.join(sorted(unknown))}.",
                              "use must, should, must_not and min_should.")
    return q.Filter(**kw)


def _edge_condition(c: dict):
    import qdrant_edge as q

    if not isinstance(c, dict):
        raise StoreUsageError(f"filter= condition {c!r} is not an object.", "write conditions as JSON objects.")
    if set(c) & {"must", "should", "must_not", "min_should"}:
        return _edge_filter(c)
    if "is_empty" in c:
        return q.IsEmptyCondition(c["is_empty"]["key"])
    if "is_null" in c:
        return q.IsNullCondition(c["is_null"]["key"])
    if "has_id" in c:
        return q.HasIdCondition(list(c["has_id"]))
    if "nested" in c:
        return q.NestedCondition(c["nested"]["key"], _edge_filter(c["nested"]["filter"]))
    if "key" not in c:
        raise StoreUsageError(f"filter= condition {json.dumps(c)[:80]} is not supported on Qdrant Edge.",
                              "use key conditions (match, range, values_count), is_empty, is_null, has_id, "
                              "nested, or nested must/should/must_not.")
    kw: dict[str, Any] = {}
    match = c.get("match")
    if match is not None:
        for key, cls in (("value", q.MatchValue), ("any", q.MatchAny), ("except", q.MatchExcept),
                         ("text", q.MatchText)):
            if key in match:
                value = match[key]
                if isinstance(value, bool):  # qdrant-edge-py reads a Python bool as the int 1 (matching no
                    import numpy as np       # bool payload); a numpy bool stays a bool
                    value = np.bool_(value)
                kw["match"] = cls(value)
                break
        else:
            raise StoreUsageError(f"filter= match {json.dumps(match)} is not supported on Qdrant Edge.",
                                  "use match value, any, except or text.")
    if c.get("range") is not None:
        kw["range"] = q.RangeFloat(**{k: c["range"][k] for k in ("gt", "gte", "lt", "lte") if k in c["range"]})
    if c.get("values_count") is not None:
        kw["values_count"] = q.ValuesCount(**c["values_count"])
    return q.FieldCondition(c["key"], **kw)
