"""`apply --engine ray`: translate shards of the source on Ray actors, write and checkpoint on the driver.

Why actors per shard and not Ray Data `map_batches`: exactly-once needs, for every shard, a cursor that is
only advanced once every row before it is durable in the destination. Ray Data's streaming executor may
reorder and re-run blocks and hides where a block came from, so it cannot say which prefix of a shard is
written. Here each shard is read in order by one actor at a time (`ShardWorker.read_chunk`), results come
back in order per shard, and the driver (the only process that writes) upserts them, flushes, and then
records each shard's cursor in the checkpoint. A crash anywhere loses at most the un-checkpointed tail of
each shard, which the resume re-reads and re-upserts; upserts are idempotent by id, so the destination ends
with exactly the source's rows. Actors read ahead (one chunk in flight each) while the driver writes.

Writes go through the driver because embedded destinations (Milvus Lite `.db`, Qdrant local folder, FAISS
file, Parquet folder with its id manifest) accept one writing process only. Reading needs the source to be
readable from several processes at once: FAISS files, Parquet folders and servers are; embedded Milvus Lite
and Qdrant local folders are not (the engine locks them), so for those the driver reads and actors only
translate. `read_by="driver"` forces that mode on a cluster whose nodes cannot see the source file.

The checkpoint is W1's (`v2v_migrate.checkpoint.Checkpoint`, same file, lock, fingerprint checks); its
`cursor` holds {"ray_shards": [{"shard", "cursor", "rows", "done"}, ...]}. A checkpoint left by the local
engine (a plain cursor) resumes here as one shard at that cursor.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from v2v_migrate.errors import KNOWN_ERRORS, UsageError
from v2v_migrate.preflight import RAY_CURSOR_KEY

# Rows per actor call: big enough to amortise a Ray round trip, small enough to keep memory bounded.
CHUNK_ROWS = 8192
# Shards per worker: more shards than workers balances uneven shards (IVF lists) without tiny reads.
SHARDS_PER_WORKER = 4
# Sources whose files/servers several processes can read at once (everything else is read by the driver).
_PARALLEL_READ_SCHEMES = ("faiss", "parquet")


@dataclass
class ShardState:
    shard: Any
    cursor: Any = None
    rows: int = 0
    done: bool = False

    def as_json(self) -> dict:
        return {"shard": self.shard, "cursor": self.cursor, "rows": self.rows, "done": self.done}


def source_is_parallel_readable(source_uri: str) -> bool:
    scheme, _, rest = str(source_uri).partition(":")
    return scheme in _PARALLEL_READ_SCHEMES or "://" in rest


def shards_from_checkpoint(cursor: Any, rows_written: int) -> list[ShardState] | None:
    """Shard progress stored by this engine, or a local engine's cursor as a single shard."""
    if isinstance(cursor, dict) and RAY_CURSOR_KEY in cursor:
        return [ShardState(s["shard"], s.get("cursor"), int(s.get("rows", 0)), bool(s.get("done")))
                for s in cursor[RAY_CURSOR_KEY]]
    if cursor is None and rows_written == 0:
        return None  # nothing written yet: plan shards afresh
    return [ShardState(None, cursor, int(rows_written), False)]


def _init_ray(address: str | None, workers: int) -> bool:
    """Connect to `address` or start a quiet local Ray; True when we started it (we then shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=True)
    if address:
        ray.init(address=address, **quiet)
    else:
        # One CPU slot per worker actor (at least 2): an actor that asks for more than exists never starts.
        ray.init(num_cpus=max(2, workers), **quiet)
    return True


def _actor_device(device: str) -> tuple[str, float]:
    """(device for the translator, GPUs per actor) from --device and what the Ray cluster has."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    d = (device or "auto").lower()
    if d not in ("auto", "cpu", "cuda") and not d.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}.", "use auto, cpu or cuda.")
    if d == "cpu" or (d == "auto" and gpus == 0):
        return "cpu", 0.0
    if gpus == 0:
        raise UsageError(f"device {device!r} asked for but the Ray cluster has no GPU.",
                         "use --device cpu (or auto), or add GPU nodes to the cluster.")
    return "cuda", gpus


def ray_get(refs):
    """ray.get that re-raises our typed errors as themselves (Ray wraps them in RayTaskError)."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, KNOWN_ERRORS):
            raise e.cause from None
        raise


class RayApply:
    """One `apply --engine ray` run; `run()` returns the local engine's summary dict plus Ray details."""

    def __init__(self, *, translator_dir, source_uri, dest_uri, state_dir=None, batch_size=1024, workers=2,
                 address=None, device="auto", restart=False, source_options=None, dest_options=None,
                 allow_existing=False, metric=None, progress=False, read_by="auto", selection=None, max_rate=None):
        from v2v_migrate.selection import Selection
        from v2v_migrate.throttle import RateLimiter

        if int(workers) < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}.", "pass --workers 1 or more.")
        self.translator_dir, self.source_uri, self.dest_uri = str(translator_dir), source_uri, dest_uri
        self.state_dir, self.batch_size, self.workers = state_dir, int(batch_size), int(workers)
        self.address, self.device, self.restart = address, device, bool(restart)
        self.source_options, self.dest_options = dict(source_options or {}), dict(dest_options or {})
        self.allow_existing, self.metric, self.progress = allow_existing, metric, progress
        if read_by not in ("auto", "driver", "workers"):
            raise UsageError(f"read_by must be auto, driver or workers, not {read_by!r}.",
                             "use read_by='driver' when Ray nodes cannot see the source file.")
        self.selection, self.limiter = selection or Selection(), RateLimiter(max_rate)
        # auto: workers read files and servers; embedded Milvus Lite / Qdrant folders are read by the driver,
        # and so is an id list (rows fetched by id, in the list's order).
        self.parallel_read = (source_is_parallel_readable(source_uri) if read_by == "auto" else read_by == "workers"
                              ) and not self.selection.ids_file

    def run(self) -> dict:
        """The local engine's pre-flight (`v2v_migrate.preflight`), then the sharded run."""
        from v2v_migrate.preflight import prepare_apply

        t_start = time.monotonic()
        # The driver only needs the translator's dims and fingerprint: keep it on the CPU.
        with prepare_apply(self.translator_dir, self.source_uri, self.dest_uri, batch_size=self.batch_size,
                           device="cpu", metric=self.metric, allow_existing=self.allow_existing,
                           restart=self.restart, state_dir=self.state_dir, source_options=self.source_options,
                           dest_options=self.dest_options, engine="ray", selection=self.selection) as job:
            from v2v_migrate.apply import selection_summary

            self.fingerprint, self.lease = job.fingerprint, job.lease
            summary = self._run(job)
            summary.update(selection_summary(job, self.limiter))
        seconds = time.monotonic() - t_start
        # rate as the local engine reports it: rows over the streaming loop, start-up left out.
        loop = summary.get("loop_seconds") or seconds
        summary.update(seconds=round(seconds, 3), rate=round(summary["rows_read"] / max(loop, 1e-9), 1))
        return summary

    def _run(self, job) -> dict:
        from v2v_migrate.checkpoint import Checkpoint

        state, cp, source, dest = job.state, job.checkpoint, job.source, job.dest
        shards = None
        if cp is not None and not cp.completed:
            shards = shards_from_checkpoint(cp.cursor, cp.rows_read)
            if shards and shards[0].shard is None and shards[0].cursor is None and cp.rows_read:
                shards = None  # a local run on a source that cannot resume mid-stream: start over
        resumed = shards is not None
        if cp is None or not resumed and not cp.completed:
            cp = Checkpoint(job.source_uri, job.dest_uri, self.fingerprint, selection=self.selection.record())
        summary = {"source": cp.source_uri, "dest": cp.dest_uri, "translator_fingerprint": self.fingerprint,
                   "state_dir": str(state), "created_dest": job.created_dest, "resumed": resumed,
                   "resumed_after_rows": cp.rows_read if resumed else 0, "incremental": False,
                   "rows_read": 0, "rows_written": 0, "rows_skipped": 0, "rows_embedded": 0, "interrupted": False,
                   "engine": "ray", "workers": self.workers}
        if cp.completed:  # plain re-run of a finished migration: nothing to do
            summary.update(completed=True, already_complete=True, dest_count=dest.count())
            return summary
        if shards is None:
            # JSON round trip now, so that a fresh run and a resumed one pass identical descriptors.
            # A source the driver reads alone gains nothing from shards (and hash-sliced ones cost a scan each).
            n = self.workers * SHARDS_PER_WORKER if self.parallel_read else 1
            planned = json.loads(json.dumps(source.shards(n)))
            shards = [ShardState(s) for s in planned] or [ShardState(None)]
        rows_before = cp.rows_read
        details = self._run_shards(state, cp, shards, source, dest)
        summary.update(details, rows_read=cp.rows_read - rows_before, rows_written=cp.rows_written - rows_before,
                       completed=cp.completed, total_rows_written=cp.rows_written, dest_count=dest.count())
        return summary

    def _run_shards(self, state, cp, shards, source, dest) -> dict:
        import ray

        from v2v_migrate.apply import _Signals
        from v2v_migrate.checkpoint import normalize_uri
        from v2v_migrate.ray_worker import ShardWorker, pack_translator_dir

        t0 = time.monotonic()
        started = _init_ray(self.address, self.workers)
        actors, stop = [], threading.Event()
        try:
            device, gpus = _actor_device(self.device)
            parallel_read = self.parallel_read
            files = ray.put(pack_translator_dir(self.translator_dir))
            gpu_share = min(1.0, gpus / self.workers) if device == "cuda" else 0
            Remote = ray.remote(num_cpus=1, num_gpus=gpu_share, max_restarts=0)(ShardWorker)
            # Absolute paths: actors do not share the driver's working directory.
            read_uri = normalize_uri(self.source_uri) if parallel_read else None
            from connectors import split_uri

            options = self.selection.source_options(split_uri(self.source_uri)[0], self.source_options)
            actors = [Remote.remote(files, self.fingerprint, read_uri, options, device,
                                    None if device == "cuda" else 1)
                      for _ in range(self.workers)]
            actor_device = ray_get([a.setup.remote() for a in actors])[0]
            t_ready = time.monotonic()
            from tqdm import tqdm

            total = source.count()
            bar = tqdm(total=total, initial=min(cp.rows_read, total), unit="vec",
                       unit_scale=True, file=sys.stderr, disable=not self.progress, dynamic_ncols=True,
                       desc=f"apply (ray, {self.workers} workers)")
            self.limiter.sleep = stop.wait  # a throttled run still stops at once on Ctrl-C
            committer = _Committer(state, cp, shards, dest, bar, self.limiter, self.selection.drop_vectors,
                                   self.lease)
            with _Signals(stop):  # first Ctrl-C/SIGTERM: stop reading, commit what is written, return
                try:
                    if parallel_read:
                        self._pump_actor_reads(actors, shards, committer, stop)
                    else:
                        self._pump_driver_reads(actors, shards, source, committer, stop)
                except ray.exceptions.RayError:
                    # A Ctrl-C in a terminal reaches Ray's processes too, and the actors die with it.
                    if not stop.is_set():
                        committer.commit_quietly()
                        raise
                except BaseException:
                    committer.commit_quietly()  # keep what is durable; report the original error
                    raise
                # Also after Ctrl-C: what was upserted becomes durable and is recorded.
                committer.commit(final=all(s.done for s in shards))
                bar.close()
                t_done = time.monotonic()
        finally:
            for a in actors:
                ray.kill(a)
            if started:
                ray.shutdown()
        # startup: Ray (when started here) + actors loading the translator; loop: reading to last commit.
        return {"interrupted": stop.is_set(), "device": actor_device, "shards": len(shards),
                "read_by": "workers" if parallel_read else "driver",
                "startup_seconds": round(t_ready - t0, 3), "loop_seconds": round(t_done - t_ready, 3),
                "checkpoints": committer.checkpoints, "checkpoint_seconds": round(committer.checkpoint_seconds, 3)}

    def _pump_actor_reads(self, actors, shards, committer, stop) -> None:
        """Each idle actor takes the next unfinished shard; one read_chunk in flight per actor."""
        import ray

        queue = deque(i for i, s in enumerate(shards) if not s.done)
        inflight: dict = {}  # ObjectRef -> (actor, shard index)
        chunk = max(self.batch_size, CHUNK_ROWS)

        def submit(actor, i, cursor):
            inflight[actor.read_chunk.remote(i, shards[i].shard, cursor, self.batch_size, chunk)] = (actor, i)

        for actor in actors:
            if queue:
                i = queue.popleft()
                submit(actor, i, shards[i].cursor)
        while inflight and not stop.is_set():
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)  # wake up to see Ctrl-C
            if not ready:
                continue
            ref = ready[0]
            actor, i = inflight.pop(ref)
            result = ray_get(ref)
            # Keep the actor busy reading the next chunk while this one is written.
            if not result["done"]:
                submit(actor, i, result["batches"][-1][3])
            elif queue:
                j = queue.popleft()
                submit(actor, j, shards[j].cursor)
            committer.write(i, result["batches"], result["done"], stop)

    def _pump_driver_reads(self, actors, shards, source, committer, stop) -> None:
        """Embedded sources: the driver reads in order; actors translate, results are taken in order."""
        window: deque = deque()  # (ObjectRef, shard index, batch)
        n = 0
        for i, s in enumerate(shards):
            if s.done:
                continue
            for batch in source.iter_batches(self.batch_size, cursor=s.cursor, shard=s.shard):
                if stop.is_set():
                    return
                window.append((actors[n % len(actors)].translate.remote(batch.vectors), i, batch))
                n += 1
                if len(window) >= 2 * len(actors):
                    self._write_oldest(window, committer, stop)
            while window:
                self._write_oldest(window, committer, stop)
            committer.write(i, [], True, stop)

    @staticmethod
    def _write_oldest(window, committer, stop) -> None:
        ref, i, b = window.popleft()
        committer.write(i, [(b.ids, ray_get(ref), b.payloads, b.cursor, b.extra)], False, stop)


class _Committer:
    """Upserts translated batches; advances shard cursors in the checkpoint only after a durable flush.

    Commit spacing is the local engine's: flush + checkpoint may take at most COMMIT_OVERHEAD of the run
    (every write when flush is free; spaced out for a FAISS file, which is rewritten whole).
    """

    def __init__(self, state, cp, shards, dest, bar, limiter, drop_vectors=(), lease=None):
        from v2v_migrate.apply import COMMIT_OVERHEAD

        self.state, self.cp, self.shards, self.dest, self.bar = state, cp, shards, dest, bar
        self.limiter, self.drop_vectors, self.lease = limiter, tuple(drop_vectors), lease
        self.dim = dest.dim  # asked once: for a server it is a round trip
        self.overhead = COMMIT_OVERHEAD
        # Progress upserted but not yet durable: shard index -> [cursor, rows, done].
        self.pending: dict[int, list] = {}
        self.last_commit, self.commit_cost = time.monotonic(), 0.0
        self.checkpoints, self.checkpoint_seconds = 0, 0.0  # reported as the local engine does
        self.save_progress()  # record the shard plan before the first write, so a resume reuses it

    def write(self, i: int, batches: list, done: bool, stop: threading.Event) -> None:
        from connectors.base import Batch, validate_vectors
        from v2v_migrate.selection import strip_vectors

        p = self.pending.setdefault(i, [self.shards[i].cursor, 0, False])
        for ids, vectors, payloads, cursor, extra in batches:
            self.limiter.wait(len(ids))
            if stop.is_set():
                return  # Ctrl-C: this batch is not written, so its cursor is not recorded
            vectors = validate_vectors(vectors, self.dim, where="translated vectors")
            self.dest.upsert(strip_vectors(Batch(list(ids), vectors, payloads, None, extra), self.drop_vectors))
            p[0], p[1] = cursor, p[1] + len(ids)
            self.cp.batches += 1
            self.bar.update(len(ids))
        p[2] = p[2] or done
        if done or time.monotonic() - self.last_commit >= self.commit_cost / self.overhead:
            self.commit()

    def commit(self, final: bool = False) -> None:
        t0 = time.monotonic()
        if self.lease is not None:
            self.lease.check()  # lost to another apply: claim nothing more
        if self.pending:
            self.dest.flush()  # durable first; only then may the checkpoint move past these rows
            for i, (cursor, rows, done) in self.pending.items():
                s = self.shards[i]
                s.cursor, s.rows, s.done = cursor, s.rows + rows, s.done or done
                self.cp.rows_read += rows
                self.cp.rows_written += rows
            self.pending = {}
        self.cp.completed = bool(final)
        self.save_progress()
        self.last_commit = time.monotonic()
        self.commit_cost = self.last_commit - t0
        self.checkpoints += 1
        self.checkpoint_seconds += self.commit_cost

    def commit_quietly(self) -> None:
        """Commit on the way out of a failure; a second failure must not hide the first."""
        try:
            self.commit()
        except Exception:
            pass  # nothing recorded: the resume re-writes those rows (idempotent upserts)

    def save_progress(self) -> None:
        from v2v_migrate.dest_state import save_progress

        self.cp.cursor = {RAY_CURSOR_KEY: [s.as_json() for s in self.shards]}
        save_progress(self.dest, self.state, self.cp)  # with the destination first, then the local cache


def run_ray_apply(*, translator_dir, source_uri, dest_uri, incremental: bool = False, delete_missing: bool = False,
                  **options) -> dict:
    """Entry point for `v2v-migrate apply --engine ray [--address ADDR] [--workers N]`.

    Takes RayApply's keywords (the local engine's, plus `workers`, `address`, `read_by`). Returns the local
    engine's summary plus `engine`, `workers`, `device`, `shards`, `read_by`, `startup_seconds`, `loop_seconds`.
    """
    if incremental or delete_missing:
        raise UsageError("--incremental and --delete-missing run on the local engine only.",
                         "drop --engine ray (or the --incremental option).")
    return RayApply(translator_dir=translator_dir, source_uri=source_uri, dest_uri=dest_uri, **options).run()
