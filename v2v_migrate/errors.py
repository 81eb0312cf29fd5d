"""The app's own errors, and the one place where every error becomes an exit code.

The libraries below own their errors (`connectors.errors`, `translators.errors`); the app adds the ones
only a migration can have (checkpoints, encoders, usage of the workflow) and maps all of them to exit
codes here, so the CLI, the Ray engine and scripts agree:

  0 ok · 1 internal error · 2 bad input or usage · 3 a store missing, empty, unreadable, lossy or full ·
  4 a destination locked by another apply · 5 foreign data or another migration's state · 130 interrupted
"""
from __future__ import annotations

from connectors import errors as store_errors
from translators import errors as translator_errors


class V2VError(Exception):
    """Base class of the app's errors. `fix` is a short imperative sentence telling the user what to do."""

    def __init__(self, message: str, fix: str | None = None):
        self.message, self.fix = message, fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class UsageError(V2VError):
    """Bad arguments or option combinations of a workflow command."""


class CheckpointError(V2VError):
    """Migration state that belongs to another migration, or that cannot be read."""


class DestinationFullError(V2VError):
    """The destination's disk (or file-size limit, or quota) ran out while apply wrote it."""


_FULL_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG, EDQUOT
_FULL_TEXTS = ("no space left", "file too large", "disk quota exceeded", "database or disk is full")


def is_disk_full(exc: BaseException) -> bool:
    """An OSError with a full-disk errno, or an engine's error that says so in words (FAISS raises a
    RuntimeError '... (File too large)', SQLite 'database or disk is full')."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    return any(t in str(exc).lower() for t in _FULL_TEXTS)


class EncoderError(V2VError):
    """An encoder that cannot be loaded or that answers wrongly (HTTP errors, wrong dimension, no text)."""


# Every error a user can cause: printed as one line, never as a traceback.
KNOWN_ERRORS = (V2VError, store_errors.ConnectorError, translator_errors.TranslatorError)

# Most specific first: the first class an error is an instance of gives its exit code.
_EXIT_CODES = (
    (store_errors.StoreLockedError, 4),
    (store_errors.DestinationNotEmptyError, 5),
    (CheckpointError, 5),
    (store_errors.StoreNotFoundError, 3),
    (DestinationFullError, 3),
    (store_errors.EmptyStoreError, 3),
    (store_errors.UnreadableStoreError, 3),  # LossyIndexError and TransientStoreError too
    (KNOWN_ERRORS, 2),
)
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


def exit_code(exc: BaseException) -> int:
    """The exit code of an error (1 for anything that is not a known error: a bug)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for classes, code in _EXIT_CODES:
        if isinstance(exc, classes):
            return code
    return EXIT_INTERNAL
