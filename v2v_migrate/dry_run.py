"""`apply --dry-run`: the apply pre-flight, then a translated sample; nothing is written.

No destination is created, no state dir, checkpoint or lock file is written. The summary says what a real
apply would do (create or resume, how many rows) and how long it would take at the measured rates.
"""
from __future__ import annotations

import os
import time
from typing import Any

from connectors import check_metric, validate_vectors
from v2v_migrate.preflight import prepare_apply


def dry_run_apply(translator_dir: str | os.PathLike | None, source_uri: str, dest_uri: str, *,
                  translator: Any = None, batch_size: int = 1024, sample_size: int = 2048,
                  device: str = "auto", metric: str | None = None, allow_existing: bool = False,
                  restart: bool = False, state_dir: str | os.PathLike | None = None,
                  source_options: dict | None = None, dest_options: dict | None = None, selection=None) -> dict:
    with prepare_apply(translator_dir, source_uri, dest_uri, translator=translator, batch_size=batch_size,
                       device=device, metric=metric, allow_existing=allow_existing, restart=restart,
                       state_dir=state_dir, source_options=source_options, dest_options=dest_options,
                       dry_run=True, selection=selection) as job:
        source, translator, cp = job.source, job.translator, job.checkpoint
        n_source = source.count()
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
        if cp is not None and cp.completed:
            action, todo = "nothing to do (already complete; --incremental copies new rows)", 0
        elif cp is not None:
            action, todo = f"resume after row {cp.rows_read}", max(n_source - cp.rows_read, 0)
        elif job.dest_exists:
            action, todo = "write into the existing destination", n_source
        else:
            action, todo = "create the destination and write", n_source
        read_rate = got / read_s if read_s > 0 else float("inf")
        tr_rate = got / translate_s if translate_s > 0 else float("inf")
        bottleneck = min(read_rate, tr_rate)
        return {
            "dry_run": True, "source": job.source_uri, "dest": job.dest_uri,
            "action": action, "rows_to_write": todo, "source_count": n_source,
            "dest_exists": job.dest_exists, "dest_count": job.dest_count,
            "dest_dim": translator.target_dim,
            "dest_metric": check_metric(job.dest.metric if job.dest_exists else (metric or source.metric)),
            "dest_id_type": source.id_type, "sample_translated": got,
            "read_rate": round(read_rate, 1), "translate_rate": round(tr_rate, 1),
            "estimated_seconds_without_write": round(todo / bottleneck, 1) if bottleneck else None,
            "translator_fingerprint": job.fingerprint, "written": 0,
            "selection": job.selection.record() if job.selection else None,
            # what a created destination would keep of the source's schema (nothing is created here)
            "schema_carried": None if job.dest_exists else job.carried["carried"],
            "schema_not_carried": None if job.dest_exists else job.carried["not_carried"],
        }
