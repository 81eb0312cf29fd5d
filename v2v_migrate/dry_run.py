"""`apply --dry-run`: check everything an apply would check and translate a sample, writing nothing.

No destination is created, no state dir, checkpoint or lock file is written. The summary says what a real
apply would do (create or resume, how many rows) and how long it would take at the measured rates.
"""
from __future__ import annotations

import os
import time
from typing import Any

from connectors.base import check_metric, validate_vectors
from v2v_migrate.checkpoint import load_checkpoint, normalize_uri, state_dir_for
from v2v_migrate.errors import CheckpointError, DestinationNotEmptyError, DimensionMismatchError, UsageError
from v2v_migrate.runtime import load_translator_on, open_existing, translator_fingerprint


def dry_run_apply(translator_dir: str | os.PathLike | None, source_uri: str, dest_uri: str, *,
                  translator: Any = None, batch_size: int = 1024, sample_size: int = 2048,
                  device: str = "auto", metric: str | None = None, allow_existing: bool = False,
                  resume: bool = True, state_dir: str | os.PathLike | None = None,
                  source_options: dict | None = None, dest_options: dict | None = None) -> dict:
    from connectors import open_store
    from v2v_migrate.apply import _check_dest_compatible

    if normalize_uri(source_uri) == normalize_uri(dest_uri):
        raise UsageError("The source and the destination are the same store.",
                         "write to a new destination; the source stays read-only.")
    translator = translator if translator is not None else load_translator_on(translator_dir, device)
    fingerprint = translator_fingerprint(translator)
    source = open_existing(source_uri, "source", source_options)
    dest = open_store(dest_uri, **(dest_options or {}))
    try:
        if source.dim != translator.source_dim:
            raise DimensionMismatchError(
                f"The source holds {source.dim}-d vectors but the translator expects {translator.source_dim}-d.",
                "use the translator trained for this source.")
        n_source = source.count()
        state = state_dir_for(dest_uri, state_dir)
        cp = load_checkpoint(state) if state.exists() else None
        why = cp.belongs_to(source_uri, dest_uri, fingerprint) if cp is not None else None
        if why and resume:  # the real apply would refuse it
            raise CheckpointError(f"The checkpoint in {state} does not belong to this apply: {why}.",
                                  "rerun with --restart to start over (it overwrites by id), "
                                  "or pass the original --translator/--source.")
        belongs = cp is not None and why is None
        dest_exists = dest.exists()
        dest_count = dest.count() if dest_exists else 0
        if dest_exists:
            _check_dest_compatible(dest, translator.target_dim, metric)
            if cp is None and dest_count and not allow_existing:
                raise DestinationNotEmptyError(
                    f"Destination {dest_uri} already holds {dest_count} vectors that this migration did not "
                    "write.", "choose a new destination, or pass --allow-existing to write into it.")
        # Time reading and translating a sample the way apply does (batch by batch); the first call
        # pays torch's start-up, so warm up first.
        translator(validate_vectors(source.sample(4, seed=0).vectors, source.dim, where="source vectors"))
        t0 = time.perf_counter()
        got, read_s, translate_s = 0, 0.0, 0.0
        for b in source.iter_batches(min(batch_size, sample_size)):
            read_s += time.perf_counter() - t0
            vecs = validate_vectors(b.vectors, source.dim, where="source vectors")
            t1 = time.perf_counter()
            validate_vectors(translator(vecs), translator.target_dim, where="translated vectors")
            translate_s += time.perf_counter() - t1
            got += len(b)
            if got >= sample_size:
                break
            t0 = time.perf_counter()
        if resume and belongs and cp.completed:
            action, todo = "nothing to do (already complete; --incremental copies new rows)", 0
        elif resume and belongs:
            action, todo = f"resume after row {cp.rows_read}", max(n_source - cp.rows_read, 0)
        elif dest_exists:
            action, todo = "write into the existing destination", n_source
        else:
            action, todo = "create the destination and write", n_source
        read_rate = got / read_s if read_s > 0 else float("inf")
        tr_rate = got / translate_s if translate_s > 0 else float("inf")
        bottleneck = min(read_rate, tr_rate)
        return {
            "dry_run": True, "source": normalize_uri(source_uri), "dest": normalize_uri(dest_uri),
            "action": action, "rows_to_write": todo, "source_count": n_source,
            "dest_exists": dest_exists, "dest_count": dest_count,
            "dest_dim": translator.target_dim,
            "dest_metric": check_metric(dest.metric if dest_exists else (metric or source.metric)),
            "dest_id_type": source.id_type, "sample_translated": got,
            "read_rate": round(read_rate, 1), "translate_rate": round(tr_rate, 1),
            "estimated_seconds_without_write": round(todo / bottleneck, 1) if bottleneck else None,
            "translator_fingerprint": fingerprint, "written": 0,
        }
    finally:
        source.close()
        dest.close()
