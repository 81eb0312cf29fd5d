"""Milvus collection schemas: what a collection holds (for the connector, and as a `connectors.schema`
description), and the collection to create from a description.

Kept apart from milvus_store so the store stays about moving rows; the functions take a MilvusClient.
"""
from __future__ import annotations

import json

from connectors.errors import StoreUsageError, UnreadableStoreError
from connectors.schema import FIELD_TO_PAYLOAD_INDEX

METRIC_TO_MILVUS = {"cosine": "COSINE", "ip": "IP", "l2": "L2"}
MILVUS_TO_METRIC = {v: k for k, v in METRIC_TO_MILVUS.items()}
# describe_index keys that are not index parameters
_INDEX_META = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows",
               "pending_index_rows", "state", "params"}
DEFAULT_HNSW = {"M": 16, "efConstruction": 200}
DEFAULT_NLIST = 128


def _vector_kind(dtype) -> str:
    from pymilvus import DataType

    if dtype == DataType.FLOAT_VECTOR:
        return "dense"
    if dtype == DataType.SPARSE_FLOAT_VECTOR:
        return "sparse"
    return "other"  # binary, float16, bfloat16, int8: not copied (the caller must drop them)


def describe_collection(client, collection: str, vector_field: str | None, preferred: str | None = None) -> dict:
    """The connector's view: {'pk', 'pk_str', 'pk_max_length', 'vector', 'dim', 'scalars', 'dynamic',
    'other_vectors' {name: 'dense'|'sparse'}, 'unsupported_vectors', 'partition_key', 'desc'}.

    vector_field picks the vector to migrate when there are several; with one FLOAT_VECTOR it is found;
    `preferred` (Store.select_vector) settles the choice when there are several and no vector_field.
    """
    from pymilvus import DataType

    desc = client.describe_collection(collection)
    pk = next(f for f in desc["fields"] if f.get("is_primary"))
    vectors = {f["name"]: f for f in desc["fields"] if "VECTOR" in f["type"].name}
    if not vectors:
        raise UnreadableStoreError(f"Milvus collection {collection!r} has no vector field.",
                                   "point at a collection that holds vectors.")
    name = vector_field
    if name is None:
        dense = [n for n, f in vectors.items() if f["type"] == DataType.FLOAT_VECTOR]
        if len(dense) > 1 and preferred in dense:
            dense = [preferred]
        if len(dense) != 1:
            raise StoreUsageError(f"Milvus collection {collection!r} has vector fields "
                                  f"{', '.join(sorted(vectors))}; which one to migrate is ambiguous.",
                                  "pass vector_field=NAME (one of those).")
        name = dense[0]
    if name not in vectors:
        raise StoreUsageError(f"Milvus collection {collection!r} has no vector field {name!r}; "
                              f"it has {', '.join(sorted(vectors))}.", "pass vector_field= one of those.")
    if vectors[name]["type"] != DataType.FLOAT_VECTOR:
        raise UnreadableStoreError(f"Milvus vector field {name!r} is {vectors[name]['type'].name}; only "
                                   "FLOAT_VECTOR fields can be migrated.", "choose a FLOAT_VECTOR field.")
    if pk["type"] not in (DataType.INT64, DataType.VARCHAR):
        raise UnreadableStoreError(f"Milvus primary key {pk['name']!r} has type {pk['type'].name}.",
                                   "use a collection with an INT64 or VARCHAR primary key.")
    kinds = {n: _vector_kind(f["type"]) for n, f in vectors.items() if n != name}
    scalars = [f["name"] for f in desc["fields"] if f["name"] != pk["name"] and f["name"] not in vectors]
    return {
        "pk": pk["name"], "pk_str": pk["type"] == DataType.VARCHAR,
        "pk_max_length": int(pk.get("params", {}).get("max_length", 65535)),
        "vector": name, "dim": int(vectors[name]["params"]["dim"]), "scalars": scalars,
        "dynamic": bool(desc.get("enable_dynamic_field")),
        "other_vectors": {n: k for n, k in kinds.items() if k != "other"},
        "unsupported_vectors": {n: vectors[n]["type"].name for n, k in kinds.items() if k == "other"},
        "partition_key": next((f["name"] for f in desc["fields"] if f.get("is_partition_key")), None),
        "desc": desc,
    }


def read_partitions(s: dict, existing: list | None, option: list | None, collection: str) -> list[str] | None:
    """Partitions to read one by one (rows keep theirs), or None: the collection as a whole.

    s: describe_collection's result; existing: the collection's partitions (None with a partition key,
    whose partitions are internal); option: the partitions= store option."""
    if s["partition_key"] is not None:
        if option:
            raise StoreUsageError(f"Milvus collection {collection!r} routes rows by its partition key "
                                  f"{s['partition_key']!r}; its partitions cannot be picked by name.",
                                  f"select tenants with filter= on {s['partition_key']} instead.")
        return None
    existing = sorted(existing or [])
    if option:
        missing = sorted(set(option) - set(existing))
        if missing:
            raise StoreUsageError(f"Milvus collection {collection!r} has no partition {', '.join(missing)}; "
                                  f"it has {', '.join(existing)}.", "pass partitions= some of those.")
        return sorted(option)
    return existing if [p for p in existing if p != "_default"] else None


def _number(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def index_from_milvus(info: dict) -> dict:
    """describe_index -> the neutral INDEX of connectors.schema."""
    kind = str(info.get("index_type", "")).upper()
    params = {k: _number(v) for k, v in {**(info.get("params") or {}), **info}.items() if k not in _INDEX_META}
    if kind == "FLAT":
        return {"type": "flat"}
    if kind == "HNSW":
        out = {"type": "hnsw"}
        if "M" in params:
            out["m"] = int(params["M"])
        if "efConstruction" in params:
            out["ef_construction"] = int(params["efConstruction"])
        return out
    if kind == "IVF_FLAT":
        return {"type": "ivf_flat", **({"nlist": int(params["nlist"])} if "nlist" in params else {})}
    return {"type": kind.lower(), "params": params} if kind else {}


def index_to_milvus(index: dict | None, default: str) -> tuple[str, dict]:
    """The neutral INDEX -> (Milvus index_type, params); `default` when there is none."""
    kind = (index or {}).get("type") or default.lower()
    if kind == "flat":
        return "FLAT", {}
    if kind == "hnsw":
        return "HNSW", {"M": int(index.get("m", DEFAULT_HNSW["M"])) if index else DEFAULT_HNSW["M"],
                        "efConstruction": int(index.get("ef_construction", DEFAULT_HNSW["efConstruction"]))
                        if index else DEFAULT_HNSW["efConstruction"]}
    if kind == "ivf_flat":
        return "IVF_FLAT", {"nlist": int((index or {}).get("nlist", DEFAULT_NLIST))}
    return kind.upper(), dict((index or {}).get("params") or {})


def _field_from_milvus(field: dict) -> dict:
    params = field.get("params") or {}
    out = {"type": field["type"].name.lower()}
    if field.get("element_type") is not None:
        out["element_type"] = field["element_type"].name.lower()
    for key in ("max_length", "max_capacity"):
        if key in params:
            out[key] = int(params[key])
    if field.get("nullable"):
        out["nullable"] = True
    return out


def describe_schema(client, collection: str, s: dict, metric_of) -> dict:
    """The connectors.schema description of a collection (s: describe_collection's result; metric_of(name)
    the metric of a dense vector field)."""
    desc = s["desc"]
    by_name = {f["name"]: f for f in desc["fields"]}
    indexes = {}
    for index_name in client.list_indexes(collection):
        info = client.describe_index(collection, index_name)
        indexes[info.get("field_name", index_name)] = info
    vectors = {}
    for name in [s["vector"], *s["other_vectors"], *s["unsupported_vectors"]]:
        f, info = by_name[name], indexes.get(name, {})
        kind = _vector_kind(f["type"])
        spec = {"kind": kind, "index": index_from_milvus(info) if info else {}}
        if kind != "sparse":
            spec["dim"] = int(f["params"]["dim"])
        if kind == "dense":
            spec["metric"] = metric_of(name)
        if kind == "other":
            spec["type"] = f["type"].name.lower()
        vectors[name] = spec
    fields = {n: _field_from_milvus(by_name[n]) for n in s["scalars"]}
    scalar_indexes = {n: str(i.get("index_type")) for n, i in indexes.items() if n in fields}
    out = {"engine": "milvus", "vector": s["vector"], "vectors": vectors,
           "id": {"name": s["pk"], "type": "str" if s["pk_str"] else "int",
                  **({"max_length": s["pk_max_length"]} if s["pk_str"] else {})},
           "fields": fields, "dynamic": s["dynamic"]}
    if s["partition_key"]:
        out["partition_key"] = s["partition_key"]
        out["num_partitions"] = int(desc.get("num_partitions") or 0) or None
    else:
        out["partitions"] = sorted(client.list_partitions(collection))
    if scalar_indexes:
        out["payload_indexes"] = {n: FIELD_TO_PAYLOAD_INDEX.get(fields[n]["type"], fields[n]["type"])
                                  for n in scalar_indexes}
        out["engine_config"] = {"scalar_indexes": scalar_indexes}
    return out


def _add_field(schema, name: str, field: dict, partition_key: bool) -> None:
    from pymilvus import DataType

    kw = {k: field[k] for k in ("max_length", "max_capacity") if field.get(k)}
    if field["type"] == "array":
        kw["element_type"] = getattr(DataType, field["element_type"].upper())
        if field["element_type"] == "varchar":
            kw.setdefault("max_length", 65535)  # Milvus Lite does not report the element length
    elif field["type"] == "varchar":
        kw.setdefault("max_length", 65535)
    if field.get("nullable"):
        kw["nullable"] = True
    if partition_key:
        kw["is_partition_key"] = True
    schema.add_field(name, getattr(DataType, field["type"].upper()), **kw)


def _scalar_index(kind: str | None, field_type: str, legacy: bool) -> str | None:
    """The scalar index to build: Milvus before 2.4 knows only Trie (VARCHAR) and STL_SORT (numbers); later
    versions and Milvus Lite build INVERTED for any field (and still the kind a same-engine source had)."""
    if legacy:
        return "Trie" if field_type == "varchar" else "STL_SORT" if field_type in FIELD_TO_PAYLOAD_INDEX else None
    return "INVERTED" if kind in (None, "Trie", "STL_SORT") else kind


def new_collection_schema(client, description: dict, dim: int, metric: str, id_type: str,
                          index_override: str | None, default_index: str, id_max_length: int,
                          legacy: bool = False):
    """(schema, index params, create kwargs) of a collection built from a connectors.schema description
    (the migrated vector gets `dim` and `metric`); a bare description gives key `id`, vector `vector` and
    a dynamic field for payloads. legacy: a server before 2.4 (its own scalar index types)."""
    from pymilvus import DataType

    ident = description.get("id") or {}
    schema = client.create_schema(auto_id=False, enable_dynamic_field=bool(description.get("dynamic", True)))
    pk = ident.get("name") or "id"
    if id_type == "str":
        schema.add_field(pk, DataType.VARCHAR, is_primary=True,
                         max_length=int(ident.get("max_length") or id_max_length))
    else:
        schema.add_field(pk, DataType.INT64, is_primary=True)
    index = client.prepare_index_params()
    name = description.get("vector") or "vector"
    spec = description.get("vectors", {}).get(description.get("vector", ""), {})
    schema.add_field(name, DataType.FLOAT_VECTOR, dim=int(dim))
    kind, params = index_to_milvus({"type": index_override.lower()} if index_override else spec.get("index"),
                                   default_index)
    index.add_index(field_name=name, index_type=kind, metric_type=METRIC_TO_MILVUS[metric], params=params)
    for other, spec in description.get("vectors", {}).items():
        if other == description.get("vector"):
            continue
        if spec["kind"] == "sparse":
            schema.add_field(other, DataType.SPARSE_FLOAT_VECTOR)
            kind, params = index_to_milvus(spec.get("index"), "sparse_inverted_index")
            index.add_index(field_name=other, index_type=kind, metric_type="IP", params=params)
        else:
            schema.add_field(other, DataType.FLOAT_VECTOR, dim=int(spec["dim"]))
            kind, params = index_to_milvus(spec.get("index"), "flat")
            index.add_index(field_name=other, index_type=kind, metric_type=METRIC_TO_MILVUS[spec["metric"]],
                            params=params)
    key = description.get("partition_key")
    for field_name, field in (description.get("fields") or {}).items():
        _add_field(schema, field_name, field, field_name == key)
    scalar_kinds = (description.get("engine_config") or {}).get("scalar_indexes") or {}
    fields = description.get("fields") or {}
    for field_name in description.get("payload_indexes") or {}:
        kind = _scalar_index(scalar_kinds.get(field_name), fields.get(field_name, {}).get("type", ""), legacy)
        if field_name in fields and kind:
            index.add_index(field_name=field_name, index_type=kind)
    create_kw = {"num_partitions": int(description["num_partitions"])} if key and description.get(
        "num_partitions") else {}
    return schema, index, create_kw
