"""The app's own errors, and the one place where every error becomes an exit code.

The libraries below own their errors (`connectors.errors`, `translators.errors`); the app adds the ones
only a migration can have (checkpoints, encoders, usage of the workflow) and maps all of them to exit
codes here, so the CLI, the Ray engine and scripts agree:

  0 ok · 1 internal error · 2 bad input or usage · 3 a store missing, empty, unreadable or lossy ·
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


def click_exception_types(typer_exit) -> tuple[tuple, tuple, tuple]:
    """(Exit, Abort, ClickException) classes of typer's vendored click (typer >= 0.20) and of click, for the
    CLI's one place that turns exceptions into exit codes (typer_exit: typer.Exit)."""
    import importlib

    exits, aborts, errors = [typer_exit], [], []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for cls_name, bucket in (("Exit", exits), ("Abort", aborts), ("ClickException", errors)):
            if hasattr(mod, cls_name):
                bucket.append(getattr(mod, cls_name))
    return tuple(exits), tuple(aborts), tuple(errors)
