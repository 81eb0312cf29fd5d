"""Where a Milvus SERVER keeps state records (connectors.state): rows of a small side collection `_v2v_state`
in the same database (key `COLLECTION/KEY`, value the record's JSON), as qdrant/migration keeps its offsets.

Why not collection properties, as on Milvus Lite: Milvus 2.3.5 standalone, killed and restarted, came back
with the last property alterations lost (measured: the owner mark written seconds before was gone, so the
rerun saw the rows as foreign data), while upserted rows are durable once acknowledged (write-ahead log).
"""
from __future__ import annotations

from connectors.errors import StoreUsageError

STATE_COLLECTION = "_v2v_state"
_READY: set = set()  # (server address, database) pairs whose side collection is known to be loaded


def _row_key(base, key: str) -> str:
    return f"{base.collection}/{key}"  # collection names are letters, digits and '_'; keys are checked


def _ensure(base, create: bool) -> bool:
    marker = (base.location, STATE_COLLECTION)
    if marker in _READY and base._client_obj is not None:
        return True
    if not base._call("has_collection", lambda c: c.has_collection(STATE_COLLECTION)):
        if not create:
            return False
        from pymilvus import DataType

        def make(c):
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
            schema.add_field("value", DataType.VARCHAR, max_length=65535)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
            index = c.prepare_index_params()
            index.add_index("v", index_type="FLAT", metric_type="L2")
            try:
                c.create_collection(STATE_COLLECTION, schema=schema, index_params=index)
            except Exception:
                if not c.has_collection(STATE_COLLECTION):  # another apply created it meanwhile: fine
                    raise

        base._call("create_collection", make, StoreUsageError)
    base._call("load_collection", lambda c: c.load_collection(STATE_COLLECTION))
    _READY.add(marker)
    return True


def read(base, key: str) -> str | None:
    if not _ensure(base, create=False):
        return None
    rows = base._call("query", lambda c: c.query(STATE_COLLECTION, filter=f'key == "{_row_key(base, key)}"',
                                                 output_fields=["value"], consistency_level="Strong"))
    return rows[0]["value"] if rows else None


def write(base, key: str, text: str | None) -> None:
    _ensure(base, create=True)
    k = _row_key(base, key)
    if text is None:
        base._call("delete", lambda c: c.delete(STATE_COLLECTION, filter=f'key == "{k}"'), StoreUsageError)
    else:
        base._call("upsert", lambda c: c.upsert(STATE_COLLECTION, [{"key": k, "value": text, "v": [0.0, 0.0]}]),
                   StoreUsageError)
