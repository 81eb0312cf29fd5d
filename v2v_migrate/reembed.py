"""reembed: replace the translated vectors of a destination with true new-model vectors, a slice at a time.

    reembed(source_uri, dest_uri, "sentence-transformers:/models/minilm", max_rows=50_000)

Each source row's text (payload field, detected as train does or --text-field) is embedded by the new
model's encoder and upserted by id into the destination, keeping the destination row's payload (marked
embedded, v2v_migrate.provenance) and its other vectors. A pass reads first the ids of `--order FILE` (the
most-read documents, say), then the whole source in its own order; rows already marked by this model, rows
without text (they stay translated, counted) and rows the destination lacks are skipped. A run stops at the
end of the pass, after `max_rows` embedded rows, after `max_seconds`, or on Ctrl-C; the next run resumes
where it stopped (the record in v2v_migrate.reembed_state), and once a pass is complete the next run starts
a new one, which embeds only what changed since (rows `apply --incremental` translated again, new rows).

Like apply: one writer per destination (the same lock), the record advances only after `dest.flush()`, so a
kill -9 loses at most the rows since the last commit, which the next run embeds again (upserts by id are
idempotent). Memory: one batch of rows, texts and vectors.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

from connectors.base import EXTRA_VECTORS, Batch
from v2v_migrate import reembed_state
from v2v_migrate.checkpoint import normalize_uri
from v2v_migrate.errors import UsageError
from v2v_migrate.provenance import MARKER, embedded_by, marked, model_identity
from v2v_migrate.throttle import RateLimiter

DEFAULT_BATCH = 256
COMMIT_OVERHEAD = 0.05  # as apply: flush + record take at most this share of the run
PARTITION = "partition"  # Batch.extra key of a Milvus partition (connectors.milvus_rows.PARTITION)
COUNTS = ("read", "embedded", "already", "no_text", "not_in_dest")


def reembed(source_uri: str, dest_uri: str, encoder, *, text_field: str | None = None, encoder_prefix: str = "",
            batch_size: int = DEFAULT_BATCH, max_rows: int | None = None, max_seconds: float | None = None,
            max_rate: float | None = None, order_file: str | os.PathLike | None = None,
            state_dir: str | os.PathLike | None = None, restart: bool = False, commit_seconds: float = 2.0,
            source_options: dict | None = None, dest_options: dict | None = None, progress: bool = False) -> dict:
    """Embed the next slice of the destination's translated rows. Returns a summary dict (the CLI's --json)."""
    from v2v_migrate.encoders import detect_text_field, encoder_from
    from v2v_migrate.locking import DestinationLock
    from v2v_migrate.stores import open_existing

    t_start = time.monotonic()
    _check_options(batch_size, max_rows, max_seconds, commit_seconds)
    limiter = RateLimiter(max_rate)
    if normalize_uri(source_uri) == normalize_uri(dest_uri):
        raise UsageError("The source and the destination are the same store.",
                         "pass --dest the migrated store and --source the original one.")
    if encoder is None:
        raise UsageError("reembed needs the new model's encoder.", "pass --encoder SPEC (or --plan with one).")
    with ExitStack() as stack:
        source = stack.enter_context(open_existing(source_uri, "source", source_options))
        dest = stack.enter_context(open_existing(dest_uri, "destination", dest_options,
                                                 prefer_vector=source.describe_schema().get("vector")))
        stack.enter_context(DestinationLock(dest_uri))
        _check_marks_fit(dest, dest_uri)
        order = _OrderFile(order_file, source.id_type) if order_file else None
        field = detect_text_field(source.sample(min(500, source.count()), seed=0).payloads, text_field)
        enc = stack.enter_context(encoder_from(encoder, encoder_prefix))
        run = _Run(source, dest, enc, field, normalize_uri(source_uri), normalize_uri(dest_uri), dest_uri,
                   state_dir, limiter, order, batch_size, max_rows, max_seconds, commit_seconds, t_start)
        return run.go(restart, progress)


def _check_options(batch_size, max_rows, max_seconds, commit_seconds) -> None:
    if int(batch_size) < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}.", "pass a positive batch size.")
    if max_rows is not None and int(max_rows) < 1:
        raise UsageError(f"--max-rows must be at least 1, got {max_rows}.", "pass e.g. --max-rows 50000.")
    if max_seconds is not None and not float(max_seconds) > 0:
        raise UsageError(f"--max-seconds must be positive, got {max_seconds}.", "pass e.g. --max-seconds 3600.")
    if commit_seconds < 0:
        raise UsageError(f"--checkpoint-seconds must be >= 0, got {commit_seconds}.", "pass e.g. 2.")


def _check_marks_fit(dest, dest_uri: str) -> None:
    """A Milvus collection without a dynamic field cannot take the mark (an undeclared key): refuse first."""
    schema = dest.describe_schema()
    if "dynamic" in schema and not schema["dynamic"] and MARKER not in (schema.get("fields") or {}):
        raise UsageError(f"The destination {dest.uri} has no dynamic field, so rows cannot record that they were "
                         f"re-embedded (payload key {MARKER}).",
                         "apply into a collection created with a dynamic field (apply creates one when the "
                         "source has one), then reembed it.")


class _OrderFile:
    """`--order FILE`: source ids, one per line, embedded first. Checked whole before anything is written;
    read again lazily (bounded memory) from the position the record holds."""

    def __init__(self, path, id_type: str):
        self.path, self.id_type = Path(path).expanduser().resolve(), id_type
        if not self.path.is_file():
            raise UsageError(f"--order file {path} does not exist.", "pass a text file of ids, one per line.")
        h = hashlib.sha256()
        for n, value in self._ids(0):
            h.update(repr(value).encode() + b"\n")
        self.digest = h.hexdigest()

    def _ids(self, start: int) -> Iterator[tuple[int, object]]:
        n = 0
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                s = line.strip()
                if not s:
                    continue
                n += 1
                if n > start:
                    yield n, self._parse(s, lineno)

    def _parse(self, s: str, lineno: int):
        if self.id_type != "int":
            return s
        try:
            return int(s)
        except ValueError:
            raise UsageError(f"--order file {self.path} line {lineno}: {s[:40]!r} is not an integer id (the "
                             "source's ids are integers).", "list one source id per line.") from None

    def chunks(self, start: int, size: int) -> Iterator[tuple[list, int]]:
        """(ids, position after them) from position `start` on."""
        chunk, pos = [], start
        for pos, value in self._ids(start):
            chunk.append(value)
            if len(chunk) == size:
                yield chunk, pos
                chunk = []
        if chunk:
            yield chunk, pos


class _Run:
    def __init__(self, source, dest, enc, field, source_norm, dest_norm, dest_uri, state_dir, limiter, order,
                 batch_size, max_rows, max_seconds, commit_seconds, t_start):
        self.source, self.dest, self.enc, self.field = source, dest, enc, field
        self.source_norm, self.dest_norm, self.dest_uri, self.state_dir = source_norm, dest_norm, dest_uri, state_dir
        self.limiter, self.order, self.batch_size = limiter, order, int(batch_size)
        self.budget = int(max_rows) if max_rows is not None else None
        self.deadline = t_start + float(max_seconds) if max_seconds is not None else None
        self.commit_seconds, self.t_start = commit_seconds, t_start
        self.identity = model_identity(enc)
        self.done = dict.fromkeys(COUNTS + ("order_ids_missing",), 0)  # this run's committed + pending counts
        self.stop = threading.Event()

    # -- the record ------------------------------------------------------------------------------
    def _fresh(self, pass_no: int) -> dict:
        return {"source": self.source_norm, "dest": self.dest_norm, "model": self.identity,
                "text_field": self.field, "pass": pass_no, "phase": "scan", "cursor": None, "order": None,
                "completed": False, "pass_counts": dict.fromkeys(COUNTS, 0), "started_at": time.time()}

    def _record(self, restart: bool) -> tuple[dict, bool, str | None]:
        """(record to continue, whether it resumes a pass, why an old record was set aside)."""
        old = None if restart else reembed_state.load(self.dest, self.dest_uri, self.state_dir)
        if old is None:
            return self._fresh(1), False, None
        for key, now in (("source", self.source_norm), ("model", self.identity), ("text_field", self.field)):
            if old.get(key) != now:
                return self._fresh(int(old.get("pass", 0)) + 1), False, f"the last pass had {key} {old.get(key)!r}"
        if old.get("completed"):
            return self._fresh(int(old["pass"]) + 1), False, None
        return old, True, None

    def _set_order(self, rec: dict) -> None:
        """A new (or changed) order file starts its ids from the top; the scan keeps its cursor."""
        if self.order is None:
            rec["order"], rec["phase"] = None, "scan"
        elif (rec.get("order") or {}).get("digest") != self.order.digest:
            rec["order"] = {"file": str(self.order.path), "digest": self.order.digest, "done": 0}
            rec["phase"] = "order"

    # -- the loop --------------------------------------------------------------------------------
    def _batches(self, rec: dict) -> Iterator[tuple[Batch, tuple]]:
        """(source batch, (what, position) to record once that batch is done)."""
        if rec["phase"] == "order":
            for ids, pos in self.order.chunks(rec["order"]["done"], self.batch_size):
                b = self.source.get(ids)
                self.done["order_ids_missing"] += len(set(ids)) - len(set(b.ids))
                yield b, ("order", pos)
            yield Batch([], None), ("order_end", None)
        it = self.source.iter_batches(self.batch_size, cursor=rec["cursor"])
        try:
            for b in it:
                yield b, ("scan", b.cursor)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    def go(self, restart: bool, progress: bool) -> dict:
        from v2v_migrate.apply import _Signals

        rec, resumed, reset = self._record(restart)
        self._set_order(rec)
        summary = {"source": self.source_norm, "dest": self.dest_norm, "model": self.identity,
                   "text_field": self.field, "pass": rec["pass"], "resumed": resumed, "interrupted": False,
                   "completed": False, "stopped_by": None}
        if reset:
            summary["new_pass_because"] = reset
        self.last_commit, self.commit_cost = time.monotonic(), 0.0
        self.limiter.sleep = self.stop.wait  # a throttled run still stops at once on Ctrl-C
        bar = _bar(self.source.count(), progress)
        with _Signals(self.stop):
            batches = self._batches(rec)
            try:
                summary["stopped_by"] = self._loop(batches, rec, bar)
            finally:
                batches.close()
                bar.close()
            summary["state_file"] = self._commit(rec)  # also on Ctrl-C: what was written becomes resumable
        summary["interrupted"] = summary["stopped_by"] == "interrupted"
        summary["completed"] = bool(rec["completed"])
        seconds = time.monotonic() - self.t_start
        summary.update({"rows_read": self.done["read"], "embedded": self.done["embedded"],
                        "already_embedded": self.done["already"], "no_text": self.done["no_text"],
                        "not_in_dest": self.done["not_in_dest"], "order_ids_missing": self.done["order_ids_missing"],
                        "pass_counts": dict(rec["pass_counts"]), "phase": rec["phase"],
                        "max_rate": self.limiter.rate, "throttled_seconds": round(self.limiter.waited, 3),
                        "dest_count": self.dest.count(), "seconds": round(seconds, 3),
                        "rate": round(self.done["embedded"] / seconds, 1) if seconds > 0 else 0.0})
        return summary

    def _loop(self, batches, rec: dict, bar) -> str:
        for b, position in batches:
            if self.stop.is_set():
                return "interrupted"
            counts, partial = self._one(b)
            if counts is None:
                return "interrupted"  # Ctrl-C while throttled: nothing of this batch was written
            self._count(rec, counts)
            bar.update(counts["read"])
            if partial:
                return "max_rows"  # its position is not recorded: the next run reads it again, skips the marked
            what, pos = position
            if what == "order":
                rec["order"]["done"] = pos
            elif what == "order_end":
                rec["phase"] = "scan"
            else:
                rec["cursor"] = pos
            if time.monotonic() - self.last_commit >= max(self.commit_seconds, self.commit_cost / COMMIT_OVERHEAD):
                self._commit(rec)
            if self.budget is not None and self.done["embedded"] >= self.budget:
                return "max_rows"
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return "max_seconds"
        rec["completed"] = True
        return "done"

    def _count(self, rec: dict, counts: dict) -> None:
        for k, v in counts.items():
            self.done[k] += v
            rec["pass_counts"][k] += v

    def _one(self, b: Batch) -> tuple[dict | None, bool]:
        """Embed the batch's rows that need it. (counts, whether max_rows cut the batch short)."""
        from v2v_migrate.encoders import texts_of

        counts = dict.fromkeys(COUNTS, 0)
        if not len(b):
            return counts, False
        texts = texts_of(b.payloads, self.field)
        have = self.dest.get(list(b.ids))
        at = {x: j for j, x in enumerate(have.ids)}
        pays = have.payloads or [None] * len(have)
        todo = []
        for i, x in enumerate(b.ids):
            j = at.get(x)
            key = ("not_in_dest" if j is None else "already" if embedded_by(pays[j]) == self.identity
                   else "no_text" if texts[i] is None else None)
            if key:
                counts[key] += 1
            else:
                todo.append((i, j))
        left = None if self.budget is None else self.budget - self.done["embedded"]
        partial = left is not None and len(todo) > left
        if partial:  # only the embedded rows count: the rest of the batch is read again next run
            todo, counts = todo[:left], dict.fromkeys(COUNTS, 0)
        counts["read"] = len(b) if not partial else 0
        if todo:
            self.limiter.wait(len(todo))  # before encoding: a Ctrl-C while throttled wastes no encoder call
            if self.stop.is_set():
                return None, False
            y = self.enc.encode([texts[i] for i, _ in todo], expected_dim=self.dest.dim)
            extra = {}
            others = have.extra.get(EXTRA_VECTORS)
            if others:  # the destination row's other vectors go back unchanged
                extra[EXTRA_VECTORS] = {n: [v[j] for _, j in todo] for n, v in others.items()}
            if b.extra.get(PARTITION) is not None:
                extra[PARTITION] = b.extra[PARTITION]
            out = Batch([b.ids[i] for i, _ in todo], y, [marked(pays[j], self.identity) for _, j in todo], None, extra)
            self.dest.upsert(out)  # even after a Ctrl-C during encoding: the rows are then recorded
            counts["embedded"] = len(todo)
        return counts, partial

    def _commit(self, rec: dict) -> str:
        t0 = time.monotonic()
        self.dest.flush()  # durable first, then the record may claim it
        rec["updated_at"] = time.time()
        where = reembed_state.save(self.dest, self.dest_uri, self.state_dir, rec)
        self.last_commit = time.monotonic()
        self.commit_cost = self.last_commit - t0
        return where


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, disable=not progress,
                dynamic_ncols=True, desc="reembed")
