"""apply: stream every source batch -> translator -> destination upsert; checkpointed, resumable, locked.

Three stages overlap: a reader thread pulls source batches, a translator thread maps them (on the GPU when
there is one), and the calling thread upserts them. Bounded queues between the stages keep memory flat
whatever the store size (about `2 * queue_depth + 3` batches in flight).

A batch is *committed* once the destination made it durable: `dest.flush()` is called before the checkpoint
advances, so the checkpoint never claims rows a crash could lose. A commit (flush + checkpoint) follows the
first batch that ends at least MIN_COMMIT_SECONDS (`--checkpoint-seconds`, default 2 s) after the previous
one; where flushing is costly (a FAISS file is rewritten whole) commits are spaced further, so that they
take at most ~5% of the run. After a crash, kill -9 or Ctrl-C, the next apply resumes after the last
committed batch; re-writing the batches after it is harmless because upserts are idempotent by id, so the
destination ends with exactly the source's rows.

The checkpoint is kept with the destination (v2v_migrate.dest_state): written before the first row (the
owner mark) and after every durable flush, so a rerun from any folder or machine resumes. The state dir
(`v2v_migrate.checkpoint`) holds a cache of it and the incremental hashes.
A subset (`--filter`, `--partition`, `--ids`) and dropped vectors are the `selection`
(v2v_migrate.selection), recorded in the checkpoint; `--max-rate` spaces the writes (v2v_migrate.throttle).
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from connectors.base import Batch, validate_vectors
from v2v_migrate.checkpoint import Checkpoint
from v2v_migrate.dest_state import note_error, save_progress
from v2v_migrate.errors import DestinationFullError, UsageError, is_disk_full
from v2v_migrate.lease import DEFAULT_TTL
from v2v_migrate.preflight import ApplyJob, prepare_apply
from v2v_migrate.selection import Selection, strip_vectors
from v2v_migrate.throttle import RateLimiter

# Flush + checkpoint may take at most this share of the run (commits are spaced accordingly).
COMMIT_OVERHEAD = 0.05
# ... and are at least this many seconds apart by default: some engines pay for each flush later (Milvus
# seals a small segment per flush, which it must then compact). A crash re-writes at most this much work.
MIN_COMMIT_SECONDS = 2.0
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item: Any, abort: threading.Event) -> bool:
    while not abort.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, abort: threading.Event) -> Any:
    while not abort.is_set():
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            continue
    return None


def _reader(source, batch_size: int, cursor: Any, out: queue.Queue, stop: threading.Event,
            abort: threading.Event) -> None:
    it = source.iter_batches(batch_size, cursor=cursor)
    try:
        for b in it:
            if not _put(out, b, abort):
                return
            if stop.is_set():  # Ctrl-C: read nothing more; the writer finishes its batch and checkpoints
                return
        _put(out, _DONE, abort)  # only when the source is exhausted: the run is then complete
    except BaseException as e:  # handed to the writer, which raises it in the caller's thread
        _put(out, _Failure(e), abort)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


def _translator_stage(translator, source_dim: int, target_dim: int, hash_path: Path | None,
                      inp: queue.Queue, out: queue.Queue, abort: threading.Event, embed=None) -> None:
    hashes_db = None
    try:
        if hash_path is not None:
            from v2v_migrate.incremental import HashIndex

            hashes_db = HashIndex(hash_path)  # SQLite connections belong to one thread
        while True:
            item = _get(inp, abort)
            if item is None:
                return
            if item is _DONE or isinstance(item, _Failure):
                _put(out, item, abort)
                return
            _put(out, _translate_batch(item, translator, source_dim, target_dim, hashes_db, embed), abort)
    except BaseException as e:
        _put(out, _Failure(e), abort)
    finally:
        if hashes_db is not None:
            hashes_db.close()


def _translate_batch(b: Batch, translator, source_dim: int, target_dim: int, hashes_db, embed=None) -> dict:
    """-> {'n_read', 'batch' (rows to write, translated), 'keys'/'hashes' (incremental), 'cursor', 'embedded'}.
    `embed` (apply --encoder): (encoder, text field, model identity); rows with text are embedded instead."""
    vectors = validate_vectors(b.vectors, source_dim, where="source vectors")
    keys = hashes = None
    if hashes_db is not None:
        from v2v_migrate.incremental import id_key, row_hashes

        keys = [id_key(x) for x in b.ids]
        hashes = row_hashes(vectors, b.payloads, b.extra.get("vectors"))
        mask = hashes_db.changed_mask(keys, hashes)
        if not mask.all():
            b = b.with_vectors(vectors).take(np.flatnonzero(mask))
            vectors = b.vectors
    out_vecs = np.zeros((0, target_dim), np.float32)
    if len(b):
        out_vecs = validate_vectors(translator(vectors), target_dim, where="translated vectors")
    out, embedded = b.with_vectors(out_vecs), 0
    if embed is not None and len(b):
        from v2v_migrate.provenance import embed_where_text

        out, embedded = embed_where_text(b, out_vecs, *embed, target_dim)
    return {"n_read": len(keys) if keys is not None else len(b), "batch": out,
            "keys": keys, "hashes": hashes, "cursor": b.cursor, "embedded": embedded}


class _Signals:
    """First SIGINT/SIGTERM: stop gracefully (finish the in-flight batch, checkpoint). Second: abort now."""

    def __init__(self, stop: threading.Event):
        self.stop, self.saved = stop, {}

    def _handle(self, signum, frame):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)


def apply_migration(translator_dir: str | os.PathLike | None, source_uri: str, dest_uri: str, *,
                    translator: Any = None, batch_size: int = 1024, restart: bool = False, device: str = "auto",
                    metric: str | None = None, allow_existing: bool = False, incremental: bool = False,
                    delete_missing: bool = False, state_dir: str | os.PathLike | None = None,
                    commit_seconds: float = MIN_COMMIT_SECONDS, queue_depth: int = 4, progress: bool = False,
                    source_options: dict | None = None, dest_options: dict | None = None,
                    selection: Selection | None = None, max_rate: float | None = None, encoder: Any = None,
                    text_field: str | None = None, encoder_prefix: str = "", lease_seconds: float = DEFAULT_TTL) -> dict:
    """Copy every source row (or the selection's), translated, into the destination, at most `max_rate`
    vectors/s. Returns a summary dict (see the CLI's --json). With `encoder` (a spec or an Encoder), rows
    that have text are embedded by the new model instead, and marked so (v2v_migrate.provenance).
    `lease_seconds`: the lease's time to live on a server destination (v2v_migrate.lease)."""
    from v2v_migrate.encoders import encoder_from

    if commit_seconds < 0:
        raise UsageError(f"--checkpoint-seconds must be >= 0, got {commit_seconds}.", "pass e.g. 2.")
    limiter = RateLimiter(max_rate)  # refuses a bad rate before anything is opened
    t_start = time.monotonic()
    with prepare_apply(translator_dir, source_uri, dest_uri, translator=translator, batch_size=batch_size,
                       device=device, metric=metric, allow_existing=allow_existing, restart=restart,
                       state_dir=state_dir, source_options=source_options, dest_options=dest_options,
                       selection=selection, lease_seconds=lease_seconds) as job, encoder_from(encoder, encoder_prefix) as enc:
        embed = None
        if enc is not None:
            from v2v_migrate.encoders import detect_text_field
            from v2v_migrate.provenance import model_identity

            sample = job.source.sample(min(500, job.source.count()), seed=0)
            embed = (enc, detect_text_field(sample.payloads, text_field), model_identity(enc))
        return _run(job, embed=embed, batch_size=batch_size, incremental=incremental, delete_missing=delete_missing,
                    commit_seconds=commit_seconds, queue_depth=queue_depth, progress=progress, t_start=t_start,
                    limiter=limiter)


def selection_summary(job: ApplyJob, limiter: RateLimiter) -> dict:
    """What both engines add to their summary: the selection, the schema carried to a created destination,
    the rate limit and the server retries."""
    out = {"selection": job.selection.record() if job.selection else None, "max_rate": limiter.rate,
           "throttled_seconds": round(limiter.waited, 3),
           "retries": sum(getattr(getattr(s, "retrier", None), "retried", 0) for s in (job.source, job.dest))}
    if job.created_dest and job.carried:
        out["schema_carried"], out["schema_not_carried"] = job.carried["carried"], job.carried["not_carried"]
    if hasattr(job.source, "missing"):
        out["ids_missing"] = job.source.missing
    return out


def _run(job: ApplyJob, *, embed=None, batch_size, incremental, delete_missing, commit_seconds, queue_depth, progress,
         t_start, limiter: RateLimiter) -> dict:
    dest, fingerprint, state, cp = job.dest, job.fingerprint, job.state, job.checkpoint
    restarted = job.restart
    known_id = cp.migration_id if cp is not None else None  # the same migration keeps its id
    if cp is not None and cp.cursor is None and not cp.completed and cp.rows_read:
        cp = None  # the source cannot resume mid-stream: start over (idempotent upserts make this safe)
    if cp is not None and incremental and not cp.completed and not cp.incremental:
        # An interrupted plain run continued as --incremental: rescan from the start instead (the rows
        # it wrote are found in the destination by the bootstrap below, so they are not copied again).
        cp = None
    resumed = cp is not None and not cp.completed
    if cp is not None and cp.completed and incremental:
        cp = None  # a new scheduled run: scan the whole source again
    if cp is None:
        cp = Checkpoint(job.source_uri, job.dest_uri, fingerprint, incremental=incremental,
                        selection=job.selection.record() if job.selection else None)
        cp.migration_id = known_id or cp.migration_id
    summary = {"source": cp.source_uri, "dest": cp.dest_uri, "translator_fingerprint": fingerprint,
               "state_dir": str(state), "created_dest": job.created_dest, "resumed": resumed,
               "resumed_after_rows": cp.rows_read if resumed else 0, "incremental": incremental,
               "rows_read": 0, "rows_written": 0, "rows_skipped": 0, "interrupted": False,
               "rows_embedded": 0}
    if cp.completed:  # plain re-run of a finished migration: nothing to do
        summary.update(completed=True, already_complete=True, dest_count=dest.count(),
                       seconds=round(time.monotonic() - t_start, 3), rate=0.0)
        return summary
    if job.lease is not None and job.lease.taken_over:
        summary["lease_taken_over_from"] = job.lease.taken_over.get("holder")
    cp.last_error = None
    save_progress(dest, state, cp)  # the owner mark (or the resumed record), before the first row
    try:
        return _loop(job, cp, summary, restarted=restarted, resumed=resumed, batch_size=batch_size,
                     incremental=incremental, delete_missing=delete_missing, commit_seconds=commit_seconds,
                     queue_depth=queue_depth, progress=progress, t_start=t_start, limiter=limiter, embed=embed)
    except Exception as e:
        note_error(dest, state, cp, e)
        if is_disk_full(e):  # the last commit stays valid: the files written before it are intact
            raise DestinationFullError(f"The destination {job.dest_uri} ran out of space "
                                       f"({str(e).strip().splitlines()[0][-160:]}).",
                                       "free space (or raise the file-size limit or quota), then run the same "
                                       "command again: it resumes after the last commit.") from None
        raise


def _loop(job: ApplyJob, cp: Checkpoint, summary: dict, *, restarted, resumed, batch_size, incremental,
          delete_missing, commit_seconds, queue_depth, progress, t_start, limiter: RateLimiter, embed=None) -> dict:
    source, dest, translator, fingerprint, state = job.source, job.dest, job.translator, job.fingerprint, job.state

    hashes_db, run = None, 0
    if incremental:
        from v2v_migrate.incremental import HashIndex

        hashes_db = HashIndex(state / "hashes.sqlite")
        if restarted or hashes_db.meta("fingerprint") not in (None, fingerprint):
            hashes_db.clear()  # another translator: every destination vector changes
        hashes_db.set_meta("fingerprint", fingerprint)
        run = int(hashes_db.meta("run", "0")) + (0 if resumed else 1)
        hashes_db.set_meta("run", run)
        if hashes_db.is_empty() and dest.count() > 0 and not restarted:  # --restart: rewrite every row
            summary["bootstrapped_ids"] = hashes_db.bootstrap_from(dest.iter_batches(4096), run - 1)

    stop, abort = threading.Event(), threading.Event()
    limiter.sleep = stop.wait  # a throttled run still stops at once on Ctrl-C
    drop = job.selection.drop_vectors if job.selection else ()
    q_read, q_done = queue.Queue(queue_depth), queue.Queue(queue_depth)
    threads = [
        threading.Thread(target=_reader, args=(source, batch_size, cp.cursor, q_read, stop, abort),
                         name="v2v-read", daemon=True),
        threading.Thread(target=_translator_stage,
                         args=(translator, translator.source_dim, translator.target_dim,
                               state / "hashes.sqlite" if incremental else None, q_read, q_done, abort, embed),
                         name="v2v-translate", daemon=True),
    ]
    total = source.count()
    from tqdm import tqdm

    bar = tqdm(total=total, initial=min(cp.rows_read, total), unit="vec", unit_scale=True, file=sys.stderr,
               disable=not progress, dynamic_ncols=True, desc="apply")
    last_commit, commit_cost = time.monotonic(), 0.0
    commits = {"checkpoints": 0, "checkpoint_seconds": 0.0}

    def commit() -> None:
        nonlocal last_commit, commit_cost
        t0 = time.monotonic()
        if job.lease is not None:
            job.lease.check()  # lost to another apply: stop before claiming anything
        dest.flush()  # durable first, then the checkpoint may claim it
        if hashes_db is not None:
            hashes_db.commit()
        save_progress(dest, state, cp)
        last_commit = time.monotonic()
        commit_cost = last_commit - t0
        commits["checkpoints"] += 1
        commits["checkpoint_seconds"] += commit_cost

    t_loop = time.monotonic()
    try:
        with _Signals(stop):
            for t in threads:
                t.start()
            while True:
                item = _get(q_done, stop)  # returns None once Ctrl-C was pressed
                if item is None:
                    summary["interrupted"] = True
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                if item is _DONE:
                    cp.completed = True
                    break
                b = strip_vectors(item["batch"], drop)
                if len(b):
                    limiter.wait(len(b))
                    if stop.is_set():
                        summary["interrupted"] = True
                        break  # Ctrl-C while throttled: this batch is not written, nor its cursor recorded
                    dest.upsert(b)
                if hashes_db is not None:
                    hashes_db.record(item["keys"], item["hashes"], run)
                n_read = item["n_read"]
                cp.cursor, cp.batches = item["cursor"], cp.batches + 1
                cp.rows_read += n_read
                cp.rows_written += len(b)
                cp.rows_skipped += n_read - len(b)
                summary["rows_read"] += n_read
                summary["rows_written"] += len(b)
                summary["rows_skipped"] += n_read - len(b)
                summary["rows_embedded"] += item["embedded"]
                bar.update(n_read)
                if time.monotonic() - last_commit >= max(commit_seconds, commit_cost / COMMIT_OVERHEAD):
                    commit()
            commit()  # also on Ctrl-C: everything upserted so far becomes durable and resumable
            if cp.completed and incremental:
                summary.update(_handle_vanished(hashes_db, dest, run, state, delete_missing))
    finally:
        abort.set()
        bar.close()
        for t in threads:
            t.join(timeout=10)
        if hashes_db is not None:
            hashes_db.close()
    seconds = time.monotonic() - t_start
    summary.update(selection_summary(job, limiter))
    summary.update(completed=cp.completed, total_rows_written=cp.rows_written, dest_count=dest.count(),
                   checkpoints=commits["checkpoints"], checkpoint_seconds=round(commits["checkpoint_seconds"], 3),
                   seconds=round(seconds, 3),
                   rate=round(summary["rows_read"] / max(time.monotonic() - t_loop, 1e-9), 1))
    return summary


def _handle_vanished(hashes_db, dest, run: int, state: Path, delete_missing: bool) -> dict:
    """Source deletions since the last run: listed, and deleted from the destination when asked."""
    import json

    gone = hashes_db.vanished(run)
    out = {"deleted_in_source": len(gone), "deleted_from_dest": 0}
    path = state / "deleted_ids.jsonl"
    if not gone:
        path.unlink(missing_ok=True)
        return out
    path.write_text("".join(json.dumps(x) + "\n" for x in gone))
    out["deleted_ids_file"] = str(path)
    if delete_missing:
        dest.delete(gone)
        dest.flush()
        hashes_db.forget(gone)
        out["deleted_from_dest"] = len(gone)
    return out
