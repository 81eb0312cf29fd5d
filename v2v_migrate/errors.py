"""Typed errors. Every user-facing failure is a V2VError whose message says what went wrong and how to fix it.

The CLI catches V2VError, prints one line (`error: <message>`) and exits with the class's exit code, so a
user mistake never shows a traceback. Library callers can catch the specific subclass.
"""
from __future__ import annotations


class V2VError(Exception):
    """Base class. `fix` is a short imperative sentence telling the user what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class UsageError(V2VError):
    """Bad arguments or option combinations."""


class UnknownSchemeError(V2VError):
    """A store URI with a scheme we do not know."""


class StoreNotFoundError(V2VError):
    """A file, folder or collection that does not exist."""

    exit_code = 3


class EmptyStoreError(V2VError):
    """A store with no vectors where vectors are needed."""

    exit_code = 3


class UnreadableStoreError(V2VError):
    """A file or collection that exists but cannot be read (corrupt, unsupported layout)."""

    exit_code = 3


class LossyIndexError(V2VError):
    """A FAISS index whose codes cannot give back the original vectors (PQ, SQ, ...)."""

    exit_code = 3


class StoreLockedError(V2VError):
    """A store (or destination) held by another process."""

    exit_code = 4


class DimensionMismatchError(V2VError):
    """Vectors whose dimension differs from the store's or translator's."""


class InvalidVectorsError(V2VError):
    """NaN/inf vectors, wrong dtype, wrong rank."""


class MetricMismatchError(V2VError):
    """The destination's metric differs from the one asked for."""


class IdTypeError(V2VError):
    """An id that the destination cannot hold."""


class DestinationNotEmptyError(V2VError):
    """A destination that already holds data we did not write."""

    exit_code = 5


class CheckpointError(V2VError):
    """A checkpoint that does not belong to this apply (other translator, source or destination)."""

    exit_code = 5


class TranslatorError(V2VError):
    """A translator directory that is missing, incomplete or incompatible."""


class TrainingError(V2VError):
    """Training inputs that cannot give a translator (too few samples, mismatched pairs, ...)."""


class CredentialsError(V2VError):
    """Missing or unreadable credentials for a server store."""
