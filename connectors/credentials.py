"""Server URIs and credentials for Milvus and Qdrant servers.

Credentials never come from the URI (a URI is logged, stored in plan.toml and checkpoints, and shown in
reports). They come from environment variables or from a file the user names with the store option
`credentials_file=`:

| engine | environment | file keys (JSON, TOML or env-style `KEY=value`) |
|---|---|---|
| Qdrant | `QDRANT_API_KEY` | `api_key` (or `QDRANT_API_KEY`) |
| Milvus | `MILVUS_TOKEN`, or `MILVUS_USER` + `MILVUS_PASSWORD` | `token`, or `user` + `password` (or the env names) |

A file wins over the environment. Secrets are held in `connectors.secrets.Secret`, whose repr/str is masked, and
`redact()` scrubs them from any message we raise (client errors sometimes echo request metadata).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from connectors.errors import CredentialsError, StoreUsageError
from connectors.secrets import Secret, is_secret_name, redact as redact_text

# Accepted names per engine, normalised to lower case; a file may use either form.
_KEYS = {
    "qdrant": {"api_key": ("api_key", "qdrant_api_key", "apikey")},
    "milvus": {
        "token": ("token", "milvus_token"),
        "user": ("user", "username", "milvus_user"),
        "password": ("password", "milvus_password"),
    },
}
_ENV = {
    "qdrant": {"api_key": "QDRANT_API_KEY"},
    "milvus": {"token": "MILVUS_TOKEN", "user": "MILVUS_USER", "password": "MILVUS_PASSWORD"},
}


@dataclass(frozen=True)
class ServerAddress:
    """An http(s) server address taken from a store URI (never with credentials in it)."""

    url: str  # scheme://host:port[/path], safe to log
    tls: bool

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port


def is_server_location(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def parse_server_location(location: str, engine: str) -> ServerAddress:
    """'https://host:6333' -> ServerAddress; refuses `user:pass@` and api keys in the query string."""
    parts = urlsplit(location)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # Do not echo the location: it holds the secret.
        env = " or ".join(_ENV[engine].values())
        raise CredentialsError(
            f"The {engine} URI contains credentials (user:password@host); they would end up in logs, "
            "plans and checkpoints.",
            f"remove them from the URI and set {env}, or pass credentials_file=PATH (JSON, TOML or KEY=value).",
        )
    if any(is_secret_name(k.split("=", 1)[0]) for k in parts.query.split("&") if k):
        raise CredentialsError(
            f"The {engine} URI carries a secret in its query string.",
            f"remove it and set {' or '.join(_ENV[engine].values())}, or pass credentials_file=PATH.",
        )
    if not parts.hostname:
        raise StoreUsageError(f"No host in {engine} server URI {location!r}.",
                         f"write it as {engine}:https://HOST:PORT#COLLECTION.")
    url = f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"
    return ServerAddress(url=url, tls=parts.scheme.lower() == "https")


def _read_file(path: str) -> dict[str, str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CredentialsError(f"Credentials file {str(p)!r} does not exist.",
                               "pass the path of an existing JSON, TOML or KEY=value file.")
    try:
        text = p.read_text()
    except OSError as e:
        raise CredentialsError(f"Credentials file {str(p)!r} cannot be read ({e.strerror}).",
                               "check the file's permissions.") from None
    stripped = text.lstrip()
    data: object
    try:
        if stripped.startswith("{"):
            data = json.loads(text)
        else:
            # TOML first (KEY = "value"); plain env files (KEY=value, unquoted) are not TOML.
            try:
                import tomllib
            except ModuleNotFoundError:  # python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                data = _parse_env_style(text)
    except (ValueError, json.JSONDecodeError):
        # The parser's message may quote the secret: do not pass it on.
        raise CredentialsError(f"Credentials file {str(p)!r} is not valid JSON, TOML or KEY=value text.",
                               "write it as JSON ({\"api_key\": \"...\"}) or as KEY=value lines.") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"Credentials file {str(p)!r} does not hold a mapping of keys to values.",
                               "write it as JSON ({\"api_key\": \"...\"}) or as KEY=value lines.")
    return {str(k).lower(): str(v) for k, v in data.items() if isinstance(v, (str, int))}


def _parse_env_style(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError("not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load_credentials(engine: str, credentials_file: str | None = None,
                     environ: dict | None = None) -> dict[str, Secret]:
    """{name: Secret} for the engine ('qdrant': api_key; 'milvus': token or user+password); {} if none.

    Partial Milvus user/password (one without the other) is refused rather than silently ignored.
    """
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if credentials_file:
        data = _read_file(credentials_file)
        for name, aliases in _KEYS[engine].items():
            for a in aliases:
                if data.get(a):
                    found[name] = data[a]
                    break
        if not found:
            accepted = sorted({a for al in _KEYS[engine].values() for a in al})
            raise CredentialsError(f"Credentials file {credentials_file!r} has no {engine} credentials.",
                                   f"put one of the keys {', '.join(accepted)} in it.")
    else:
        for name, var in _ENV[engine].items():
            if env.get(var):
                found[name] = env[var]
    if engine == "milvus" and ("user" in found) != ("password" in found):
        missing = "password" if "user" in found else "user"
        raise CredentialsError(f"Milvus credentials have a {'user' if missing == 'password' else 'password'} "
                               f"but no {missing}.",
                               "set both MILVUS_USER and MILVUS_PASSWORD (or user and password in the file), "
                               "or MILVUS_TOKEN.")
    return {k: Secret(v) for k, v in found.items()}


def milvus_token(creds: dict[str, Secret]) -> str:
    """The token pymilvus expects: MILVUS_TOKEN as is, else 'user:password'; '' when anonymous."""
    if "token" in creds:
        return creds["token"].reveal()
    if "user" in creds:
        return f"{creds['user'].reveal()}:{creds['password'].reveal()}"
    return ""


def redact(text: str, creds: dict[str, Secret]) -> str:
    """`text` with every credential value (and a token's user:password form) masked."""
    values = list(creds.values())
    if "user" in creds and "password" in creds:
        values.append(milvus_token(creds))
    return redact_text(text, values)
