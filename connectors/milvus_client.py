"""Connecting to Milvus: Milvus Lite files (embedded, one process per file) and Milvus servers, and the
connector's base class (connection, retried calls, the collection's schema).

Both go through `pymilvus.MilvusClient`. Milvus Lite 3 serves each file from a thread of this process and
keeps the file's lock until that server is released: `disconnect` releases it once the last store of this
process using the file is closed, so other processes can open it.
"""
from __future__ import annotations

import fcntl
import re
import threading
from pathlib import Path
from typing import Any, Callable

from connectors.base import Store
from connectors.credentials import milvus_token, redact
from connectors.errors import (
    ConnectorError, StoreLockedError, StoreNotFoundError, StoreUsageError, TransientStoreError, UnreadableStoreError,
)
from connectors.milvus_schema import describe_collection
from connectors.retry import describe, is_transient

_STATE_LOCKS: dict = {}  # (location, collection) -> the lock of its state writes (MilvusBase.write_state)
# Open clients per Lite file in this process (the file's server is released at zero).
_LITE_OPEN: dict[str, int] = {}
# Lite's in-process gRPC server refuses pings more often than every 5 minutes (GOAWAY "too_many_pings",
# after which calls fail); pymilvus pings idle channels every 10 s by default.
LITE_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": False}
SERVER_FIX = ("check the address, that the server runs, and MILVUS_TOKEN / MILVUS_USER+MILVUS_PASSWORD or "
              "credentials_file=.")


def _lite_locked(location: str) -> bool:
    lock = Path(location) / "LOCK"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def connect(location: str, server, creds: dict, timeout: float | None, create: bool, fail: Callable):
    """A MilvusClient for a Lite file (`server` None; created when `create`) or a server address.

    fail(exc, what, fix=None) turns a client error into the store's typed, redacted error.
    """
    from pymilvus import MilvusClient

    if server is None:
        path = Path(location)
        if not path.exists():
            if not create:
                raise StoreNotFoundError(f"Milvus Lite file {location!r} does not exist.",
                                         "check the path (milvus:PATH.db#COLLECTION).")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            client = MilvusClient(location, grpc_options=LITE_GRPC_OPTIONS)
        except Exception as e:
            if _lite_locked(location):
                raise StoreLockedError(f"Milvus Lite file {location!r} is open in another process.",
                                       "close the other program using it (Milvus Lite allows one "
                                       "process per file), or serve it with a Milvus server.") from None
            raise fail(e, "open") from None
        _LITE_OPEN[location] = _LITE_OPEN.get(location, 0) + 1
        return client
    kw: dict[str, Any] = {"uri": server.url, "token": milvus_token(creds)}
    if timeout:
        kw["timeout"] = timeout
    try:
        return MilvusClient(**kw)  # https:// turns on TLS in pymilvus
    except Exception as e:
        raise fail(e, "connection", fix=SERVER_FIX) from None


def server_before(client, version: tuple[int, int]) -> bool:
    """Whether a Milvus server is older than `version` (cached per client; unknown counts as not older)."""
    cached = getattr(client, "_v2v_version", None)
    if cached is None:
        try:
            text = str(client.get_server_version())
        except Exception:
            text = ""
        match = re.match(r"v?(\d+)\.(\d+)", text)
        cached = (int(match.group(1)), int(match.group(2))) if match else (99, 0)
        client._v2v_version = cached
    return cached < version


def disconnect(client, location: str, is_server: bool) -> None:
    client.close()
    if is_server:
        return
    _LITE_OPEN[location] -= 1
    if _LITE_OPEN[location] <= 0:
        del _LITE_OPEN[location]
        try:
            from milvus_lite.server_manager import server_manager_instance
        except ImportError:  # older milvus-lite: a separate server process, stopped by close()
            return
        server_manager_instance.release_server(location)


class MilvusBase(Store):
    """Connection, retried calls and the collection's schema, for MilvusStore (which sets `location`,
    `collection`, `_server`, `_creds`, `_timeout`, `_vector_field_option`, `_preferred_vector` and `retrier`)."""

    _client_obj = None
    _schema: dict | None = None
    _loaded = False

    def _fail(self, exc: Exception, what: str, cls=UnreadableStoreError, fix: str | None = None) -> ConnectorError:
        if isinstance(exc, ConnectorError):
            return exc
        msg = redact(describe(exc), self._creds)
        return cls(f"Milvus {what} failed for {self.uri}: {msg}", fix or "check that the collection is "
                   "healthy and the server reachable.")

    def _call(self, what: str, fn, cls=UnreadableStoreError, fix: str | None = None):
        """fn(client), retried on transient server errors; other errors typed and redacted."""
        return self.retrier.guard(lambda: fn(self._client()), f"Milvus {what} on {self.uri}",
                                  lambda e: redact(describe(e), self._creds), lambda e: self._fail(e, what, cls, fix), fix)

    def _client(self, create: bool = False):
        if self._client_obj is None:
            def fail(e, what, fix=None):  # a server that cannot be reached yet is worth another try
                return self._fail(e, what, TransientStoreError if is_transient(e) else UnreadableStoreError, fix)

            self._client_obj = connect(self.location, self._server, self._creds, self._timeout, create, fail)
        return self._client_obj

    def exists(self) -> bool:
        if self._server is None and not Path(self.location).exists():
            return False
        return self._call("has_collection", lambda c: c.has_collection(self.collection))

    def _require(self) -> dict:
        if self._schema is not None:
            return self._schema
        if not self._call("has_collection", lambda c: c.has_collection(self.collection)):
            names = sorted(self._call("list_collections", lambda c: c.list_collections()))
            raise StoreNotFoundError(
                f"Milvus collection {self.collection!r} not found in {self.location}; "
                f"existing collections: {', '.join(names) if names else '(none)'}.",
                "use one of those names after '#', or create the collection first.")
        self._schema = self._call("describe_collection", lambda c: describe_collection(
            c, self.collection, self._vector_field_option, self._preferred_vector))
        return self._schema

    def _load(self) -> None:
        if not self._loaded:
            state = self._call("get_load_state", lambda c: c.get_load_state(self.collection).get("state"))
            if getattr(state, "name", str(state)) != "Loaded":
                self._call("load_collection", lambda c: c.load_collection(self.collection))
            self._loaded = True

    # -- state kept with the collection: its properties (connectors.state) -------------------------
    keeps_state = True

    def read_state(self, key: str) -> dict | None:
        from connectors.state import PREFIX, check_key, decode

        check_key(key)
        if not self.exists():
            return None
        if self._server:  # a side collection (connectors.milvus_state says why)
            from connectors import milvus_state

            return decode(key, milvus_state.read(self, key), f"Milvus collection {self.uri}")
        info = self._call("describe_collection", lambda c: c.describe_collection(self.collection))
        return decode(key, (info.get("properties") or {}).get(PREFIX + key), f"Milvus collection {self.uri}")

    def write_state(self, key: str, value: dict | None) -> None:
        from connectors.state import PREFIX, encode

        text, name = encode(key, value), PREFIX + key
        if self._server:  # a side collection (connectors.milvus_state says why)
            from connectors import milvus_state

            return milvus_state.write(self, key, text)
        # One property write at a time per collection in this process (the lease renews from a thread).
        with _STATE_LOCKS.setdefault((self.location, self.collection), threading.Lock()):
            self._write_property(name, text)

    def _write_property(self, name: str, text: str | None) -> None:
        if text is None:
            self._call("drop_collection_properties", lambda c: c.drop_collection_properties(
                self.collection, property_keys=[name]), StoreUsageError)
            return
        # one metadata write: atomic, and durable without a flush
        self._call("alter_collection_properties", lambda c: c.alter_collection_properties(
            self.collection, properties={name: text}), StoreUsageError)

    def close(self) -> None:
        if self._client_obj is not None:
            disconnect(self._client_obj, self.location, self._server is not None)
            self._client_obj = None
            self._loaded = False
