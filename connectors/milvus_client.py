"""Connecting to Milvus: Milvus Lite files (embedded, one process per file) and Milvus servers.

Both go through `pymilvus.MilvusClient`. Milvus Lite 3 serves each file from a thread of this process and
keeps the file's lock until that server is released: `disconnect` releases it once the last store of this
process using the file is closed, so other processes can open it.
"""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any, Callable

from connectors.credentials import milvus_token
from connectors.errors import StoreLockedError, StoreNotFoundError

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
