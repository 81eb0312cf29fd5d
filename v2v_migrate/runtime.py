"""Small shared steps of the workflow: opening stores with clear errors, picking a device, loading a translator."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from v2v_migrate.errors import (
    EmptyStoreError,
    StoreNotFoundError,
    TranslatorError,
    UsageError,
)



def open_existing(uri: str, role: str, options: dict | None = None, allow_empty: bool = False):
    """Open a store that must exist (a source or target); refuse a missing or empty one with the fix."""
    from connectors import open_store

    store = open_store(uri, **(options or {}))
    if not store.exists():
        store.close()
        raise StoreNotFoundError(f"The {role} store {uri} does not exist.",
                                 f"check the {role} URI (path, file name and #collection).")
    if not allow_empty and store.count() == 0:
        store.close()
        raise EmptyStoreError(f"The {role} store {uri} holds no vectors.",
                              f"point --{role} at a store with vectors.")
    return store


def load_translator_on(path: str | os.PathLike, device: str = "auto") -> Any:
    """Load a translator directory and move it to the device."""
    p = Path(path)
    if not p.is_dir():
        raise TranslatorError(f"Translator directory {p} does not exist.",
                              "train one first (v2v-migrate train ... --out DIR) or fix --translator.")
    if not (p / "config.json").exists():
        raise TranslatorError(f"{p} holds no config.json, so it is not a translator directory.",
                              "point --translator at the folder written by `v2v-migrate train`.")
    from translators.io import load_translator

    translator = load_translator(str(p))
    return translator.to(device or "auto")  # 'auto' = the GPU when torch sees one


def translator_fingerprint(translator: Any) -> str:
    fp = getattr(translator, "fingerprint", None)
    fp = fp() if callable(fp) else fp
    if not fp:
        raise TranslatorError("The translator has no fingerprint.", "re-save it with the current version.")
    return str(fp)


def parse_options(pairs: list[str] | None, flag: str) -> dict:
    """['k=v', ...] -> {'k': value}; values parsed as JSON when they look like numbers/bools."""
    import json

    out: dict = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r} is not KEY=VALUE.", f"write it as {flag} key=value.")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out
