"""Errors of the connectors library: each says what went wrong (`message`) and how to fix it (`fix`).

The library never decides how a program reacts (exit codes, retries, wording around it): callers catch
`ConnectorError` or a subclass. The v2v-migrate app maps these classes to its exit codes in one place.
"""
from __future__ import annotations


class ConnectorError(Exception):
    """Base class. `fix` is a short imperative sentence telling the user what to do."""

    def __init__(self, message: str, fix: str | None = None):
        self.message, self.fix = message, fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class StoreUsageError(ConnectorError):
    """A bad URI, option or call (an unknown metric, a write to a read-only store, ...)."""


class UnknownSchemeError(StoreUsageError):
    """A store URI with a scheme no connector handles."""


class CredentialsError(StoreUsageError):
    """Missing, partial or unreadable credentials for a server store (never echoes a secret)."""


class StoreNotFoundError(ConnectorError):
    """A file, folder or collection that does not exist."""


class EmptyStoreError(ConnectorError):
    """A store with no vectors where vectors are needed."""


class UnreadableStoreError(ConnectorError):
    """A store that exists but cannot be read (corrupt, unsupported layout, server refused)."""


class LossyIndexError(UnreadableStoreError):
    """A FAISS index whose codes cannot give back the original vectors (PQ, SQ, ...)."""


class TransientStoreError(UnreadableStoreError):
    """A server error worth retrying (connection reset, timeout, rate limit) that persisted."""


class StoreLockedError(ConnectorError):
    """A store held by another process."""


class DestinationNotEmptyError(ConnectorError):
    """A store that already exists or holds data where a new or empty one is needed."""


class DimensionMismatchError(ConnectorError):
    """Vectors whose dimension differs from the store's."""


class MetricMismatchError(ConnectorError):
    """A store whose metric differs from the one asked for."""


class InvalidVectorsError(ConnectorError):
    """NaN/inf vectors, wrong dtype or rank."""


class IdTypeError(ConnectorError):
    """An id that the store cannot hold."""
