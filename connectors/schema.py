"""What a collection or index looks like, as a plain dict every engine reads and writes, and how much of it
another engine can carry.

`Store.describe_schema()` returns a *schema description*; `Store.create(dim, metric, id_type, schema=...)`
builds the store from one. The format is shared by all engines, so a description read from one engine can
be carried to another: `carry(description, engine, dim=..., metric=...)` returns the description the
destination engine will build, what it keeps (`carried`) and what it cannot (`not_carried`), in words, and
the vectors it cannot hold at all (`unholdable`: the caller must drop them explicitly, never silently).

Keys (only `engine`, `vector` and `vectors` are always present):

    engine           "milvus" | "qdrant" | "qdrant-local" | "qdrant-edge" | "faiss" | "parquet" (a store's
                     `flavor`: qdrant-client's local mode keeps less than a Qdrant server)
    vector           name of the migrated dense vector; "" = the engine's single unnamed vector
    vectors          {name: {"kind": "dense", "dim": int, "metric": "cosine"|"ip"|"l2", "index": INDEX}
                          | {"kind": "sparse", "index": INDEX, "modifier": "idf" (Qdrant) | None}}
    id               {"name": str, "type": "int"|"str", "max_length": int}                       (Milvus)
    fields           {name: {"type": "varchar"|"int8".."int64"|"float"|"double"|"bool"|"json"|"array",
                             "max_length"?, "element_type"?, "max_capacity"?, "nullable"?}}  (Milvus declared)
    dynamic          bool: undeclared payload keys are kept (Milvus dynamic field)
    partitions       [name, ...]: named partitions ("_default" included)                         (Milvus)
    partition_key    field name; num_partitions: int                                             (Milvus)
    payload_indexes  {field: "keyword"|"integer"|"float"|"bool"|"text"|"datetime"|"uuid"|"geo"}
    engine_config    settings only the same engine reads (Qdrant: "hnsw", "optimizers")

INDEX is {"type": "flat"}, {"type": "hnsw", "m": int, "ef_construction": int}, {"type": "ivf_flat",
"nlist": int}, or an engine's own index {"type": "<its name, lower case>", "params": {...}}, which only the
same engine can rebuild. A parameter the source does not report (Milvus Lite reports none) is absent: the
destination then uses its default.
"""
from __future__ import annotations

import copy
from typing import Any

PORTABLE_INDEXES = ("flat", "hnsw", "ivf_flat")
# What each engine can hold. indexes: the INDEX types it builds; fields: declared typed scalar fields.
CAPS: dict[str, dict[str, Any]] = {
    "milvus": {"named": True, "sparse": True, "fields": True, "partitions": True, "payload_indexes": "declared",
               "indexes": PORTABLE_INDEXES},
    "qdrant": {"named": True, "sparse": True, "fields": False, "partitions": False, "payload_indexes": "any",
               "indexes": ("hnsw",)},
    "faiss": {"named": False, "sparse": False, "fields": False, "partitions": False, "payload_indexes": None,
              "indexes": PORTABLE_INDEXES},
    "parquet": {"named": False, "sparse": False, "fields": False, "partitions": False, "payload_indexes": None,
                "indexes": ()},
}
CAPS["qdrant-edge"] = CAPS["qdrant"]
# qdrant-client's local mode ignores payload indexes and collection-level HNSW/optimizer settings.
CAPS["qdrant-local"] = {**CAPS["qdrant"], "payload_indexes": None, "settings": False}
QDRANT_FAMILY = ("qdrant", "qdrant-edge", "qdrant-local")
# Milvus scalar field types -> the payload index type other engines give such a field.
FIELD_TO_PAYLOAD_INDEX = {"varchar": "keyword", "bool": "bool", "float": "float", "double": "float",
                          **{f"int{b}": "integer" for b in (8, 16, 32, 64)}}
DEFAULT_MILVUS_VECTOR = "vector"


def minimal(engine: str, dim: int, metric: str, index: dict | None = None, vector: str = "") -> dict:
    """The description of a store with one unnamed dense vector and nothing else known."""
    return {"engine": engine, "vector": vector,
            "vectors": {vector: {"kind": "dense", "dim": int(dim), "metric": metric, "index": index or {}}}}


def extra_vectors(description: dict | None) -> dict:
    """{name: spec} of the vectors other than the migrated one."""
    if not description:
        return {}
    return {n: v for n, v in description.get("vectors", {}).items() if n != description.get("vector")}


def index_words(index: dict | None) -> str:
    if not index or not index.get("type"):
        return "the engine's default index"
    params = {k: v for k, v in index.items() if k != "type"}
    shown = ", ".join(f"{k}={v}" for k, v in (params.get("params", params)).items())
    return f"{index['type']}" + (f" ({shown})" if shown else "")


def _carry_index(index: dict | None, source_engine: str, engine: str, what: str, carried: list,
                 not_carried: list) -> dict:
    index = dict(index or {})
    kind = index.get("type")
    if not kind:
        return {}
    same_family = source_engine == engine or {source_engine, engine} <= set(QDRANT_FAMILY)
    if kind in CAPS[engine]["indexes"] or (same_family and kind not in PORTABLE_INDEXES):
        carried.append(f"{what}: index {index_words(index)}")
        return index
    if CAPS[engine]["indexes"]:
        not_carried.append(f"{what}: index {index_words(index)} ({engine} builds "
                           f"{'/'.join(CAPS[engine]['indexes'])}; its default is used)")
    else:
        not_carried.append(f"{what}: index {index_words(index)} ({engine} has no index)")
    return {}


def carry(source: dict, engine: str, *, dim: int, metric: str, drop_vectors: tuple | list = ()) -> dict:
    """What a new `engine` store built from `source` holds. The migrated vector gets `dim` and `metric` (the
    translator's output); the other vectors are copied as they are unless named in `drop_vectors`.

    Returns {"schema": description, "carried": [...], "not_carried": [...], "unholdable": [vector names]}.
    """
    caps = CAPS[engine]
    src_engine = source.get("engine", "")
    same = src_engine == engine
    same_family = same or {src_engine, engine} <= set(QDRANT_FAMILY)
    carried: list[str] = []
    not_carried: list[str] = []
    unholdable: list[str] = []
    dropped = set(drop_vectors)
    name = source.get("vector", "")
    others = {n: v for n, v in extra_vectors(source).items() if n not in dropped}
    for n in sorted(dropped & set(extra_vectors(source))):
        not_carried.append(f"vector {n!r}: dropped (--drop-vector)")
    # Names: kept by the same engine family and wherever several vectors need them; a single vector takes
    # the destination's default name otherwise (unnamed in Qdrant, `vector` in Milvus).
    if same_family or (others and caps["named"]):
        out_name = name or (DEFAULT_MILVUS_VECTOR if engine == "milvus" else "")
    else:
        out_name = DEFAULT_MILVUS_VECTOR if engine == "milvus" else ""
    src_spec = source.get("vectors", {}).get(name, {})
    what = f"vector {out_name!r}" if out_name else "vector"
    vectors = {out_name: {"kind": "dense", "dim": int(dim), "metric": metric,
                          "index": _carry_index(src_spec.get("index"), src_engine, engine, what, carried,
                                                not_carried)}}
    for n, spec in sorted(others.items()):
        if not caps["named"] or (spec["kind"] == "sparse" and not caps["sparse"]):
            unholdable.append(n)
            continue
        spec = copy.deepcopy(spec)
        if spec["kind"] == "sparse" and not same_family:
            spec["index"] = {}  # each engine indexes sparse vectors its own way
        else:
            spec["index"] = _carry_index(spec.get("index"), src_engine, engine, f"vector {n!r}", carried,
                                         not_carried)
        vectors[n] = spec
        carried.append(f"vector {n!r} ({spec['kind']}{', ' + str(spec['dim']) + '-d' if spec.get('dim') else ''}, "
                       "copied unchanged)")
    out: dict[str, Any] = {"engine": engine, "vector": out_name, "vectors": vectors}
    _carry_layout(source, engine, same, same_family, out, carried, not_carried)
    return {"schema": out, "carried": carried, "not_carried": not_carried, "unholdable": unholdable}


def _carry_layout(source: dict, engine: str, same: bool, same_family: bool, out: dict, carried: list,
                  not_carried: list) -> None:
    """Ids, fields, partitions, payload indexes and engine settings: see `carry`."""
    caps = CAPS[engine]
    fields = source.get("fields") or {}
    if same and source.get("id"):
        out["id"] = dict(source["id"])
        if source["id"].get("max_length"):
            carried.append(f"id field {source['id']['name']!r} (max_length {source['id']['max_length']})")
    if fields:
        if caps["fields"]:
            out["fields"] = copy.deepcopy(fields)
            carried.append("fields " + ", ".join(f"{n} {_field_words(f)}" for n, f in fields.items()))
        else:
            not_carried.append(f"declared field types ({', '.join(fields)}): {engine} payloads take the values "
                               "as they are, without declared types")
    if "dynamic" in source:
        if caps["fields"]:
            out["dynamic"] = bool(source["dynamic"]) or not same
            if source["dynamic"]:
                carried.append("dynamic field")
    key = source.get("partition_key")
    if key:
        if caps["partitions"]:
            out["partition_key"], out["num_partitions"] = key, source.get("num_partitions")
            carried.append(f"partition key {key!r}" + (f" ({source['num_partitions']} partitions)"
                                                        if source.get("num_partitions") else ""))
        elif caps["payload_indexes"] == "any":
            out.setdefault("payload_indexes", {})[key] = "keyword"
            carried.append(f"partition key {key!r} as a keyword payload index (filter on it per tenant)")
        else:
            not_carried.append(f"partition key {key!r} ({engine} has no partitions; it stays a payload field)")
    named = [p for p in source.get("partitions") or [] if p != "_default"]
    if named and not key:
        if caps["partitions"]:
            out["partitions"] = list(source["partitions"])
            carried.append(f"partitions {', '.join(named)} (rows keep their partition)")
        else:
            not_carried.append(f"partitions {', '.join(named)} ({engine} has none; rows are written together)")
    indexes = dict(source.get("payload_indexes") or {})
    if indexes:
        _carry_payload_indexes(indexes, fields, engine, out, carried, not_carried)
    config = source.get("engine_config") or {}
    if config and same_family and caps.get("settings", True):
        out["engine_config"] = copy.deepcopy(config)
        carried.append(f"{source['engine']} settings: {', '.join(sorted(config))}")
    elif config and same_family:
        not_carried.append(f"{source['engine']} settings {', '.join(sorted(config))} ({engine} keeps none)")
    elif set(config) - {"scalar_indexes"}:  # Milvus' scalar index kinds are carried as payload indexes
        not_carried.append(f"{source['engine']} settings {', '.join(sorted(config))} (another engine's)")


def _carry_payload_indexes(indexes: dict, fields: dict, engine: str, out: dict, carried: list,
                           not_carried: list) -> None:
    mode = CAPS[engine]["payload_indexes"]
    if mode is None:
        not_carried.append(f"payload indexes on {', '.join(sorted(indexes))} ({engine} has none)")
        return
    kept = {}
    for field, kind in sorted(indexes.items()):
        if mode == "declared" and field not in (out.get("fields") or {}):
            not_carried.append(f"payload index on {field!r} ({engine} indexes declared fields only; the value "
                               "goes to the dynamic field)")
            continue
        kept[field] = kind
    if kept:
        out.setdefault("payload_indexes", {}).update(kept)
        carried.append("payload indexes " + ", ".join(f"{f} ({k})" for f, k in kept.items()))


def _field_words(field: dict) -> str:
    words = field.get("type", "?")
    if field.get("type") == "array":
        words += f"<{field.get('element_type', '?')}>"
    extras = [f"{k} {field[k]}" for k in ("max_length", "max_capacity") if field.get(k)]
    return words + (f"({', '.join(extras)})" if extras else "")


def compare(expected: dict, found: dict) -> list[str]:
    """Differences, in words, between the description a destination should have (`carry(...)["schema"]`) and
    the one it has. Empty when everything carried is there."""
    out = []
    for name, spec in (expected.get("vectors") or {}).items():
        got = (found.get("vectors") or {}).get(name)
        label = f"vector {name!r}" if name else "vector"
        if got is None:
            out.append(f"{label} is missing")
            continue
        for key in ("kind", "dim", "metric"):
            if spec.get(key) is not None and got.get(key) != spec.get(key):
                out.append(f"{label}: {key} {got.get(key)} instead of {spec.get(key)}")
        want, have = spec.get("index") or {}, got.get("index") or {}
        for key, value in want.items():
            if key != "params" and have.get(key) is not None and have.get(key) != value:
                out.append(f"{label}: index {key} {have.get(key)} instead of {value}")
    for name, field in (expected.get("fields") or {}).items():
        got = (found.get("fields") or {}).get(name)
        if got is None:
            out.append(f"field {name!r} is missing")
        elif any(got.get(k) != v for k, v in field.items()):
            out.append(f"field {name!r} is {_field_words(got)} instead of {_field_words(field)}")
    for key in ("partition_key", "dynamic"):
        if expected.get(key) and found.get(key) != expected.get(key):
            out.append(f"{key.replace('_', ' ')} {found.get(key)!r} instead of {expected[key]!r}")
    missing = set(expected.get("partitions") or []) - set(found.get("partitions") or [])
    if missing:
        out.append(f"partitions missing: {', '.join(sorted(missing))}")
    for field, kind in (expected.get("payload_indexes") or {}).items():
        got = (found.get("payload_indexes") or {}).get(field)
        if got != kind:
            out.append(f"payload index on {field!r}: {got or 'none'} instead of {kind}")
    return out
