"""Secrets: one pattern list and one mask for everything the project writes or shows.

Plans, checkpoints, reports, log lines and error messages all pass through here:
- `clean_uri` drops `user:password@` and secret-named query parameters from a URI;
- `clean_options` drops secret-named connector options (`api_key=`, `password=`, ...);
- `redact` masks secret values in free text: the values given, and those of every environment variable
  whose name looks secret (MILVUS_PASSWORD, QDRANT_API_KEY, V2V_ENCODER_API_KEY, ...);
- `Secret` holds a value that never shows itself in repr, str or f-strings.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Names of options, query parameters and environment variables whose values are secret.
SECRET_NAME = re.compile(r"(?i)(token|key|secret|passw(or)?d|pwd|auth|credential|cookie|signature)")
# Masking very short values would garble ordinary text ("ab" inside every word).
_MIN_MASKED = 3
_USERINFO = re.compile(r"//[^/@\s]*@")


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(str(name)))


class Secret:
    """A string that does not show itself in repr, str, f-strings or tracebacks of containers."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)


def clean_uri(uri: str | None) -> str | None:
    """`uri` without `user:password@` and without secret-named query parameters (store URIs and URLs)."""
    if uri is None:
        return None
    text = str(uri)
    scheme, sep, rest = text.partition(":")
    if "://" not in rest:
        return _USERINFO.sub("//", text)
    url, hsep, frag = rest.partition("#")
    parts = urlsplit(url)
    query = "&".join(q for q in parts.query.split("&") if q and not is_secret_name(q.split("=")[0]))
    clean = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, query, parts.fragment))
    return f"{scheme}{sep}{clean}{hsep}{frag}"


def clean_options(options: Mapping | None) -> dict:
    """Connector options safe to write down: secret-named keys and None values left out."""
    return {k: v for k, v in (options or {}).items() if not is_secret_name(k) and v is not None}


def secret_values(environ: Mapping | None = None) -> list[str]:
    """Values of the environment variables whose names look secret."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items() if is_secret_name(k) and v and len(v) >= _MIN_MASKED]


def redact(text: str, values: Iterable = (), environ: Mapping | None = None) -> str:
    """`text` with every given value, every secret environment value and any `user:pass@` masked."""
    out = _USERINFO.sub(f"//{MASK}@", str(text))
    plain = [v.reveal() if isinstance(v, Secret) else str(v) for v in values if v]
    for v in sorted(set(plain + secret_values(environ)), key=len, reverse=True):
        if len(v) >= _MIN_MASKED:
            out = out.replace(v, MASK)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message (installed by the CLI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
