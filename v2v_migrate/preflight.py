"""The one pre-flight of `apply`: every check made before a row is written, shared by the local engine,
the Ray engine and the dry run (which runs it without the lock and without creating anything).

In order: options, source != destination, the translator (its fingerprint names the migration), the
source (exists, has rows, fits the translator; seen through the selection: filter, partitions, id list),
the destination lock (a local flock; for a server destination also a lease kept with it: v2v_migrate.lease),
the checkpoint (the destination's own record first, v2v_migrate.dest_state, else the local cache: this
migration's, another's, another selection's, or an engine's the caller cannot resume), the schema carried from the source (vectors the destination cannot hold must be
dropped by name), the destination (same dimension and metric, the source's other vectors, no data this
migration did not write), and finally its creation, from the carried schema, when it is missing.
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from connectors import check_metric, open_store, split_uri
from connectors.errors import DestinationNotEmptyError, DimensionMismatchError, MetricMismatchError
from translators import load_translator
from v2v_migrate.strategies_report import refuse_bridge_as_translator
from v2v_migrate.carry import carry_to, check_existing
from v2v_migrate.checkpoint import Checkpoint, load_checkpoint, normalize_uri, state_dir_for
from v2v_migrate.dest_state import forget, load_dest_checkpoint
from v2v_migrate.errors import CheckpointError, UsageError
from v2v_migrate.lease import DEFAULT_TTL, Lease, needs_lease
from v2v_migrate.selection import Selection
from v2v_migrate.stores import open_existing

RAY_CURSOR_KEY = "ray_shards"  # a checkpoint cursor of the Ray engine: {"ray_shards": [...]}


@dataclass
class ApplyJob:
    """What the pre-flight found; the engines run their loops on it."""

    source_uri: str               # normalised (absolute paths, no secrets)
    dest_uri: str
    translator: Any
    fingerprint: str
    source: Any                   # open connectors.Store objects, closed when the pre-flight's block ends
    dest: Any
    state: Path                   # the destination's state folder
    checkpoint: Checkpoint | None  # this migration's checkpoint to resume from; None: start afresh
    dest_exists: bool
    dest_count: int
    created_dest: bool
    restart: bool
    selection: Selection | None = None  # what is migrated (subset, dropped vectors)
    carried: dict | None = None       # v2v_migrate.carry.carry_to: the destination's schema, in words too
    lease: Any = None                 # v2v_migrate.lease.Lease held on a server destination, else None


def check_dest_compatible(dest, target_dim: int, metric: str | None) -> None:
    if dest.dim != target_dim:
        raise DimensionMismatchError(
            f"Destination {dest.uri} holds {dest.dim}-d vectors but the translator outputs {target_dim}-d.",
            "write to a new destination (another collection name or path) for the new model.")
    if metric and check_metric(dest.metric) != check_metric(metric):
        raise MetricMismatchError(f"Destination {dest.uri} uses metric {dest.metric}, not {metric}.",
                                  "drop --metric or write to a new destination.")


def _checkpoint(state: Path, dest, dest_exists: bool, job_ids: tuple, restart: bool, dry_run: bool,
                engine: str) -> tuple[Checkpoint | None, bool]:
    """(the checkpoint to resume from or None, whether a v2v apply wrote this destination).

    The destination's own record wins over the local cache (dest_state); a torn local cache is then
    repaired by the next commit instead of being refused."""
    kept = load_dest_checkpoint(dest) if dest_exists else None
    try:
        local = load_checkpoint(state)
    except CheckpointError:
        if kept is None:
            raise
        local = None
    cp = kept or local
    where = f"kept with {dest.uri}" if kept is not None else f"in {state}"
    owned = cp is not None
    if cp is not None:
        why = cp.belongs_to(*job_ids)
        if why and not restart:
            raise CheckpointError(f"The migration state {where} does not belong to this apply: {why}.",
                                  "rerun with --restart to start over (it overwrites by id), "
                                  "or pass the original --translator/--source (and --filter/--partition/--ids/"
                                  "--drop-vector).")
        if why or restart:
            if not dry_run:
                forget(dest, state)
            cp = None
    if cp is not None and not cp.completed:
        from_ray = isinstance(cp.cursor, dict) and RAY_CURSOR_KEY in cp.cursor
        if engine == "local" and from_ray:
            raise CheckpointError("The checkpoint of this destination was written by `apply --engine ray`.",
                                  "resume with --engine ray, or rerun with --restart.")
        if engine == "ray" and cp.incremental:
            raise CheckpointError(f"The checkpoint in {state} is from an unfinished --incremental run.",
                                  "finish it with --engine local, or rerun with --restart.")
    return cp, owned


def _closing(store):
    """An exit callback closing `store`; a failure to close (a last flush on a full disk) must not hide
    the error that is already on its way out."""
    def close(exc_type, exc, tb) -> bool:
        try:
            store.close()
        except Exception:
            if exc_type is None:
                raise
        return False
    return close


@contextmanager
def prepare_apply(translator_dir: str | os.PathLike | None, source_uri: str, dest_uri: str, *,
                  translator: Any = None, batch_size: int = 1024, device: str = "auto", metric: str | None = None,
                  allow_existing: bool = False, restart: bool = False, state_dir: str | os.PathLike | None = None,
                  source_options: dict | None = None, dest_options: dict | None = None, engine: str = "local",
                  dry_run: bool = False, selection: Selection | None = None,
                  lease_seconds: float = DEFAULT_TTL) -> Iterator[ApplyJob]:
    """Run every check; yield an ApplyJob with both stores open (and the lock held unless dry_run)."""
    from v2v_migrate.locking import DestinationLock

    if int(batch_size) < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}.", "pass a positive batch size.")
    if normalize_uri(source_uri) == normalize_uri(dest_uri):
        raise UsageError("The source and the destination are the same store.",
                         "write to a new destination; the source stays read-only.")
    if translator is None:
        translator = load_translator(translator_dir, device)
    refuse_bridge_as_translator(translator, "apply")
    fingerprint = str(translator.fingerprint)
    selection = selection or Selection()
    with ExitStack() as stack:
        source = open_existing(source_uri, "source", selection.source_options(split_uri(source_uri)[0],
                                                                               source_options))
        stack.callback(source.close)
        source = selection.wrap(source)
        if source.dim != translator.source_dim:
            raise DimensionMismatchError(
                f"The source holds {source.dim}-d vectors but the translator expects {translator.source_dim}-d.",
                "use the translator trained for this source (v2v-migrate train --source ...).")
        dest = open_store(dest_uri, **(dest_options or {}))
        stack.push(_closing(dest))
        lease = None
        if not dry_run:
            stack.enter_context(DestinationLock(dest_uri))
        dest_exists = dest.exists()
        if not dry_run and dest_exists and needs_lease(dest_uri):
            lease = stack.enter_context(Lease(dest_uri, dest_options, lease_seconds))
        state = state_dir_for(dest_uri, state_dir)
        cp, owned = _checkpoint(state, dest, dest_exists, (source_uri, dest_uri, fingerprint, selection.record()),
                                restart, dry_run, engine)
        out_metric = check_metric(metric or (dest.metric if dest_exists else source.metric))
        carried = carry_to(source, dest, translator.target_dim, out_metric, selection.drop_vectors)
        dest.select_vector(carried["schema"]["vector"] or None)  # a destination with several vectors
        dest_count = dest.count() if dest_exists else 0
        if dest_exists:
            check_dest_compatible(dest, translator.target_dim, metric)
            check_existing(carried, dest)
            if not owned and not allow_existing and dest_count > 0:
                raise DestinationNotEmptyError(
                    f"Destination {dest_uri} already holds {dest_count} vectors that this migration did not "
                    "write.", "choose a new destination, or pass --allow-existing to write into it.")
        elif not dry_run:
            dest.create(translator.target_dim, out_metric, id_type=source.id_type, exist_ok=True,
                        schema=carried["schema"])
            if needs_lease(dest_uri):
                lease = stack.enter_context(Lease(dest_uri, dest_options, lease_seconds))
        yield ApplyJob(normalize_uri(source_uri), normalize_uri(dest_uri), translator, fingerprint, source, dest,
                       state, cp, dest_exists, dest_count, created_dest=not dest_exists and not dry_run,
                       restart=restart, selection=selection, carried=carried, lease=lease)
