"""Milvus collection schemas: reading what a collection holds, and the schema of a collection we create.

Kept apart from milvus_store so the store stays about moving rows; both functions take a MilvusClient.
"""
from __future__ import annotations

from connectors.errors import StoreUsageError, UnreadableStoreError


def describe_collection(client, collection: str, vector_field: str | None) -> dict:
    """{'pk', 'pk_str', 'pk_max_length', 'vector', 'dim', 'scalars', 'dynamic'} of an existing collection.

    vector_field picks the vector to migrate when there are several; with one FLOAT_VECTOR it is found.
    """
    from pymilvus import DataType

    desc = client.describe_collection(collection)
    pk = next(f for f in desc["fields"] if f.get("is_primary"))
    vectors = {f["name"]: f for f in desc["fields"] if f["type"] in (
        DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR,
        DataType.BINARY_VECTOR, DataType.SPARSE_FLOAT_VECTOR)}
    if not vectors:
        raise UnreadableStoreError(f"Milvus collection {collection!r} has no vector field.",
                                   "point at a collection that holds vectors.")
    name = vector_field
    if name is None:
        dense = [n for n, f in vectors.items() if f["type"] == DataType.FLOAT_VECTOR]
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
    scalars = [f["name"] for f in desc["fields"] if f["name"] != pk["name"] and f["name"] not in vectors]
    return {
        "pk": pk["name"], "pk_str": pk["type"] == DataType.VARCHAR,
        "pk_max_length": int(pk.get("params", {}).get("max_length", 65535)),
        "vector": name, "dim": int(vectors[name]["params"]["dim"]), "scalars": scalars,
        "dynamic": bool(desc.get("enable_dynamic_field")),
    }


def new_collection_schema(client, dim: int, metric_type: str, id_type: str, index_type: str,
                          id_max_length: int):
    """(schema, index params) of a collection v2v-migrate creates: key `id`, vector `vector`, dynamic
    fields for payloads; HNSW gets M=16, efConstruction=200."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    if id_type == "str":
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=id_max_length)
    else:
        schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
    params = {"M": 16, "efConstruction": 200} if index_type == "HNSW" else {}
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=index_type, metric_type=metric_type, params=params)
    return schema, index
