"""Where `apply` keeps its state, and the checkpoint that makes it resumable.

State lives in a state dir (default `.v2v-state/` in the working directory, `--state-dir` to move it),
one subfolder per destination, named from a readable slug plus a hash of the destination's normalised URI:

    .v2v-state/
      milvus-docs-1a2b3c4d5e/
        checkpoint.json    # cursor after the last durable batch, counts, translator fingerprint, URIs
        hashes.sqlite      # --incremental only: one content hash per source id
        deleted_ids.jsonl  # --incremental only: ids that vanished from the source in the last run

The checkpoint is only advanced after the destination made the batch durable (after `flush()` where the
engine needs it), and it is written atomically (tmp file + fsync + os.replace + fsync of the folder), so a
crash at any instant leaves either the old or the new checkpoint, never a torn one.

The same record is kept WITH the destination (v2v_migrate.dest_state): that copy is authoritative, and
this folder is a cache (and the only copy for stores that keep no state).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.secrets import clean_uri
from connectors.state import atomic_write_bytes
from v2v_migrate.errors import CheckpointError

DEFAULT_STATE_DIR = ".v2v-state"
CHECKPOINT_VERSION = 1


def normalize_uri(uri: str) -> str:
    """A URI that names the same store from any working directory: local paths made absolute.

    `milvus:x.db#docs` -> `milvus:/abs/x.db#docs`; server URLs (`http://...`) are kept as they are.
    """
    scheme, sep, rest = str(uri).partition(":")
    if not sep:
        return str(uri)
    path, hsep, frag = rest.partition("#")
    if "://" in path or not path:
        return clean_uri(str(uri))
    return f"{scheme}:{os.path.abspath(os.path.expanduser(path))}{hsep}{frag}"


def dest_key(dest_uri: str) -> str:
    """Folder name for a destination: readable slug + 10 hex digits of the normalised URI's hash."""
    norm = normalize_uri(dest_uri)
    digest = hashlib.sha256(norm.encode()).hexdigest()[:10]
    scheme, _, rest = norm.partition(":")
    tail = rest.rstrip("/").replace("#", "-").split("/")[-1]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{scheme}-{tail}")[:60].strip("-.")
    return f"{slug}-{digest}"


def state_dir_for(dest_uri: str, state_dir: str | os.PathLike | None = None) -> Path:
    """The destination's state folder (not created here)."""
    return Path(state_dir or DEFAULT_STATE_DIR).expanduser().resolve() / dest_key(dest_uri)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` so that readers (and a crash) see either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class Checkpoint:
    """Progress of one apply: everything up to `cursor` is durable in the destination."""

    source_uri: str
    dest_uri: str
    translator_fingerprint: str
    cursor: Any = None
    rows_read: int = 0  # source rows consumed up to the cursor (incremental: including skipped ones)
    rows_written: int = 0  # rows upserted into the destination up to the cursor
    rows_skipped: int = 0  # incremental: unchanged rows not rewritten
    batches: int = 0
    completed: bool = False
    incremental: bool = False
    selection: dict | None = None  # the subset and dropped vectors (v2v_migrate.selection); None: everything
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = CHECKPOINT_VERSION
    migration_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])  # names this migration in status
    last_error: str | None = None  # the error that ended the last run, if one did (one line, no secrets)

    def belongs_to(self, source_uri: str, dest_uri: str, fingerprint: str, selection: dict | None = None) -> str | None:
        """None when this checkpoint is for that migration, else the reason it is not."""
        if self.dest_uri != normalize_uri(dest_uri):
            return f"it was written for destination {self.dest_uri}"
        if self.source_uri != normalize_uri(source_uri):
            return f"it was written for source {self.source_uri}, not {normalize_uri(source_uri)}"
        if self.translator_fingerprint != fingerprint:
            return (f"it was written with translator {self.translator_fingerprint[:12]}, "
                    f"not {str(fingerprint)[:12]}")
        if (self.selection or None) != (selection or None):
            return (f"it was written for the selection {self.selection or 'all rows'}, not "
                    f"{selection or 'all rows'} (a cursor means nothing for another subset)")
        return None


def checkpoint_path(state: Path) -> Path:
    return Path(state) / "checkpoint.json"


def load_checkpoint(state: Path) -> Checkpoint | None:
    path = checkpoint_path(state)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(f"Checkpoint {path} is unreadable ({e}).",
                              "rerun with --restart to start the migration over (upserts are idempotent).")
    return checkpoint_from_dict(data, str(path))


def checkpoint_from_dict(data: Any, where: str) -> Checkpoint:
    """A checkpoint from its JSON record (a file, or the destination's copy); refused when malformed."""
    try:
        known = {k: v for k, v in data.items() if k in Checkpoint.__dataclass_fields__}
        cp = Checkpoint(**known)
    except (AttributeError, TypeError) as e:
        raise CheckpointError(f"Checkpoint {where} is unreadable ({e}).",
                              "rerun with --restart to start the migration over (upserts are idempotent).")
    if cp.version != CHECKPOINT_VERSION:
        raise CheckpointError(f"Checkpoint {where} has version {cp.version}, expected {CHECKPOINT_VERSION}.",
                              "rerun with --restart to start the migration over.")
    return cp


def save_checkpoint(state: Path, cp: Checkpoint) -> None:
    cp.updated_at = time.time()
    atomic_write_text(checkpoint_path(state), json.dumps(asdict(cp), indent=1, default=str) + "\n")


def remove_checkpoint(state: Path) -> None:
    try:
        checkpoint_path(state).unlink()
    except FileNotFoundError:
        pass
