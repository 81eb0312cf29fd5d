"""Small records a program keeps WITH a store (not in a local folder): `Store.read_state` / `write_state`.

Why: a migration's ownership mark, progress and lease must be found by a rerun started from any folder,
container or machine that reaches the store. Each engine keeps the records where the store lives:

  faiss:PATH            PATH.v2v-state.json          (a JSON object {key: record}, replaced atomically)
  parquet:DIR           DIR/_v2v_state.json          (ignored by readers: names starting with '_')
  qdrant-edge:DIR#C     DIR/C.v2v-state.json
  milvus:...#C          collection property  v2v.state.<key>  (a JSON string; Lite and servers)
  qdrant:...#C          collection metadata  v2v.state.<key>  (local mode and servers)

The file flavour lives here; the engines' flavours live in their connectors.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from connectors.errors import StoreUsageError, UnreadableStoreError

PREFIX = "v2v.state."
MAX_BYTES = 60_000  # a record is a few hundred bytes; Milvus properties and Qdrant metadata stay small
_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise StoreUsageError(f"State key {key!r} is not a short lower-case name.", "use e.g. 'apply' or 'reembed'.")
    return key


def encode(key: str, value: dict | None) -> str | None:
    """The record as compact JSON text (None deletes), refused when it is not a small JSON object."""
    check_key(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StoreUsageError(f"State {key!r} must be a dict, not {type(value).__name__}.", "pass a dict or None.")
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if len(text.encode()) > MAX_BYTES:
        raise StoreUsageError(f"State {key!r} is {len(text.encode())} bytes, over {MAX_BYTES}.",
                              "keep state records small (a cursor and counts, not data).")
    return text


def decode(key: str, text, where: str) -> dict | None:
    if text is None or text == "":
        return None
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UnreadableStoreError(f"The {key!r} state of {where} is unreadable ({e}).",
                                   "remove it (v2v-migrate apply --restart rewrites it).") from None
    return value if isinstance(value, dict) else None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any instant leaves the old or the new file, never a torn
    one: tmp + fsync + rename + fsync of the folder (without the last, the rename may not survive a power cut)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileState:
    """Records in one JSON file, replaced atomically (tmp + fsync + rename + fsync of the folder), so a
    crash at any instant leaves the old or the new file, never a torn one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _all(self) -> dict:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise UnreadableStoreError(f"State file {str(self.path)!r} is unreadable ({e}).",
                                       "delete it; the next apply --restart writes it again.") from None
        return data

    def read(self, key: str) -> dict | None:
        return decode(key, self._all().get(check_key(key)), str(self.path))

    def write(self, key: str, value: dict | None) -> None:
        text = encode(key, value)
        data = self._all()
        if text is None:
            if key not in data:
                return
            data.pop(key)
        else:
            data[key] = json.loads(text)
        if not self.path.parent.is_dir():
            raise StoreUsageError(f"Folder {str(self.path.parent)!r} does not exist.", "create the store first.")
        atomic_write_bytes(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


class FileStateMixin:
    """read_state/write_state for stores made of local files: one JSON file at `_state_path()`.
    Listed before the Store base class (`class X(FileStateMixin, Store)`)."""

    keeps_state = True

    def _state_path(self) -> Path:
        raise NotImplementedError

    def read_state(self, key: str) -> dict | None:
        return FileState(self._state_path()).read(key)

    def write_state(self, key: str, value: dict | None) -> None:
        FileState(self._state_path()).write(key, value)
