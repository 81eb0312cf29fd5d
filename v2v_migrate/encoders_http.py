"""`openai:BASE_URL#MODEL`: an OpenAI-compatible embeddings endpoint (POST BASE_URL/embeddings).

Request `{"model": MODEL, "input": [texts]}`, answer `{"data": [{"index": i, "embedding": [...]}, ...]}`.
The key comes from V2V_ENCODER_API_KEY (sent as a Bearer token, held in a `Secret`, never written or shown).
Transient failures (timeouts, connection errors, 408/409/429 and 5xx answers) are retried with exponential
back-off, a bounded number of times, then end in one EncoderError that says what happened; other answers
(401, 404, 400, a malformed body) fail at once. Settings: V2V_ENCODER_TIMEOUT (seconds per request, default
60) and V2V_ENCODER_RETRIES (tries per batch, default 5).
"""
from __future__ import annotations

import os
import time

from connectors.secrets import Secret, clean_uri, redact
from v2v_migrate.encoder_base import DEFAULT_BATCH, Encoder
from v2v_migrate.errors import EncoderError

KEY_ENV = "V2V_ENCODER_API_KEY"
TRANSIENT = {408, 409, 425, 429}
BACKOFF_SECONDS = 0.5     # first wait; doubled after each failed try
MAX_WAIT_SECONDS = 30.0   # cap of one wait (also of a server's Retry-After)


def _env_number(name: str, default: float, cast=float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise EncoderError(f"{name}={raw!r} is not a number.", f"set {name} to a number, or unset it.") from None
    if value <= 0:
        raise EncoderError(f"{name}={raw!r} must be positive.", f"set {name} to a positive number, or unset it.")
    return value


class OpenAIEncoder(Encoder):
    def __init__(self, target: str, prefix: str = "", batch_size: int = DEFAULT_BATCH, timeout: float | None = None,
                 tries: int | None = None):
        base, sep, model = target.rpartition("#")
        if not sep or not base or not model:
            raise EncoderError(f"encoder spec openai:{clean_uri(target)} names no model.",
                               "write openai:BASE_URL#MODEL, e.g. "
                               "openai:https://api.openai.com/v1#text-embedding-3-small.")
        if not base.startswith(("http://", "https://")):
            raise EncoderError(f"encoder URL {clean_uri(base)!r} is not http(s).",
                               "write openai:https://HOST/v1#MODEL.")
        if "@" in base.split("//", 1)[1].split("/", 1)[0]:
            raise EncoderError("the encoder URL holds credentials (user:password@).",
                               f"remove them from the URL and set {KEY_ENV} instead.")
        super().__init__(f"openai:{clean_uri(base)}#{model}", prefix, batch_size)
        self.url, self.model = base.rstrip("/") + "/embeddings", model
        self.timeout = timeout or _env_number("V2V_ENCODER_TIMEOUT", 60.0)
        self.tries = int(tries or _env_number("V2V_ENCODER_RETRIES", 5, int))
        self._key = Secret(os.environ.get(KEY_ENV, ""))
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key.reveal()}"
        return h

    def _encode_batch(self, texts):
        httpx, last, wait = self._httpx, "", BACKOFF_SECONDS
        shown = clean_uri(self.url)
        for attempt in range(1, self.tries + 1):
            retry_after = None
            try:
                r = self._client.post(self.url, json={"model": self.model, "input": list(texts)},
                                      headers=self._headers())
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout:g} s"
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__})"
            else:
                if r.status_code == 200:
                    return self._vectors(r, len(texts))
                last = f"HTTP {r.status_code} {self._body(r)}".strip()
                if r.status_code not in TRANSIENT and r.status_code < 500:
                    raise EncoderError(f"encoder endpoint {shown} answered {last}.", self._fix(r.status_code))
                retry_after = self._retry_after(r)
            if attempt < self.tries:
                time.sleep(min(MAX_WAIT_SECONDS, retry_after if retry_after is not None else wait))
                wait *= 2
        raise EncoderError(f"encoder endpoint {shown} failed {self.tries} tries in a row (last: {last}).",
                           "check that the endpoint is up and serves the model; raise V2V_ENCODER_TIMEOUT or "
                           "V2V_ENCODER_RETRIES for a slow one.")

    def _vectors(self, r, n: int):
        try:
            data = r.json()["data"]
            rows = sorted(data, key=lambda d: d.get("index", 0))
            return [row["embedding"] for row in rows]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EncoderError(f"encoder endpoint {clean_uri(self.url)} answered without an OpenAI embeddings body "
                               f"({self._body(r)}).",
                               "point --encoder at an OpenAI-compatible /embeddings API.") from None

    @staticmethod
    def _body(r) -> str:
        return redact(" ".join(r.text.split())[:160]) if r.text else ""

    @staticmethod
    def _retry_after(r) -> float | None:
        try:
            return max(0.0, float(r.headers.get("retry-after", "")))
        except ValueError:
            return None

    @staticmethod
    def _fix(status: int) -> str:
        if status in (401, 403):
            return f"set {KEY_ENV} to a valid key for this endpoint."
        if status == 404:
            return "check BASE_URL (it ends before /embeddings, e.g. https://HOST/v1) and the model name."
        return "check the model name and that the endpoint speaks the OpenAI embeddings format."

    def close(self) -> None:
        self._client.close()
