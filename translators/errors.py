"""Errors of the translators library: each says what went wrong (`message`) and how to fix it (`fix`).

Callers catch `TranslatorError` (every error raised here) or a subclass; the v2v-migrate app maps them
to its exit codes in one place.
"""
from __future__ import annotations


class TranslatorError(Exception):
    """Base class. `fix` is a short imperative sentence telling the user what to do."""

    def __init__(self, message: str, fix: str | None = None):
        self.message, self.fix = message, fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class TranslatorUsageError(TranslatorError):
    """An unknown method, option or device."""


class TranslatorFileError(TranslatorError):
    """A translator directory that is missing, half-written, corrupt or from an unknown version."""


class TrainingError(TranslatorError):
    """Training inputs that cannot give a translator (too few samples, mismatched pairs, ...)."""


class DimensionMismatchError(TranslatorError):
    """Vectors whose dimension differs from the translator's."""


class InvalidVectorsError(TranslatorError):
    """NaN/inf vectors, wrong dtype or rank."""
