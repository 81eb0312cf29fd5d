"""The new model's encoder (`--encoder SPEC`): texts in, new-model vectors out.

    enc = open_encoder("sentence-transformers:/models/minilm", prefix="")
    y = enc.encode(texts)              # float32 (n, enc.dim), batched, validated
    texts = texts_of(payloads, field)  # str or None per row

Specs (../shared/DESIGN.md):
  sentence-transformers:NAME_OR_DIR   a local folder, or a name from the local cache (downloaded only when
                                      the cache lacks it and HF_HUB_OFFLINE is not set)
  openai:BASE_URL#MODEL               POST BASE_URL/embeddings (the OpenAI wire format); the key comes from
                                      V2V_ENCODER_API_KEY and is never written, logged or shown
  python:MODULE:FUNCTION              a function list[str] -> float array (n, d)

Every backend is imported lazily (the `encode` extra). Outputs are checked: one finite row per text and
the same dimension in every batch (a wrong-dimension endpoint is an EncoderError, never a silent write).
The base class (batching, checks, progress) is in encoder_base.py, the HTTP backend in encoders_http.py;
train, plan, report and (issue 16) reembed share this module.
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from connectors.secrets import clean_uri
from v2v_migrate.encoder_base import DEFAULT_BATCH, Encoder
from v2v_migrate.errors import EncoderError

SCHEMES = ("sentence-transformers", "openai", "python")
# Payload fields tried in this order when --text-field is not given (the first that holds text wins).
TEXT_FIELDS = ("text", "content", "body", "document", "passage", "chunk", "page_content", "description",
               "summary", "abstract", "title", "name")
SPEC_FIX = ("write --encoder as sentence-transformers:NAME_OR_DIR, openai:BASE_URL#MODEL or "
            "python:MODULE:FUNCTION.")


class SentenceTransformerEncoder(Encoder):
    def __init__(self, where: str, prefix: str = "", batch_size: int = DEFAULT_BATCH, device: str = "cpu"):
        super().__init__(f"sentence-transformers:{where}", prefix, batch_size)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EncoderError("the sentence-transformers encoder needs the package sentence-transformers.",
                               "pip install 'v2v-migrate[encode]'.") from None
        local = Path(where).expanduser()
        try:  # transformers draws a weight-loading bar on stderr even for a script: the encoder draws its own
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            if local.is_dir():
                self.model = SentenceTransformer(str(local), device=device)
            else:
                self.model = _load_cached_or_download(SentenceTransformer, where, device)
        except EncoderError:
            raise
        except Exception as e:  # a folder that is not a model, a name neither cached nor reachable
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise EncoderError(f"cannot load sentence-transformers model {where!r} ({first}).",
                               "pass a local model folder (sentence-transformers:/path/to/model) or the name of a "
                               "model in the local cache.") from None
        # sentence-transformers >= 5 renamed the method; older versions only have the long name.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self._dim = int(dim) if dim else None

    def _encode_batch(self, texts):
        return self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)


def _load_cached_or_download(cls, name: str, device: str):
    try:
        return cls(name, device=device, local_files_only=True)
    except Exception:
        if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
            raise EncoderError(f"sentence-transformers model {name!r} is not in the local cache (HF_HUB_OFFLINE "
                               "is set).", "download it once, or pass a local model folder.") from None
        return cls(name, device=device)


class PythonEncoder(Encoder):
    def __init__(self, target: str, prefix: str = "", batch_size: int = DEFAULT_BATCH):
        super().__init__(f"python:{target}", prefix, batch_size)
        module, sep, func = target.rpartition(":")
        if not sep or not module or not func:
            raise EncoderError(f"encoder spec python:{target} names no function.", "write python:MODULE:FUNCTION.")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise EncoderError(f"cannot import module {module!r} for the encoder ({e}).",
                               "make the module importable (PYTHONPATH) or fix the spec.") from None
        self.fn = getattr(mod, func, None)
        if not callable(self.fn):
            raise EncoderError(f"module {module!r} has no function {func!r}.", "fix the spec python:MODULE:FUNCTION.")

    def _encode_batch(self, texts):
        return self.fn(list(texts))


def parse_spec(spec: str) -> tuple[str, str]:
    """'scheme:rest' -> (scheme, rest), refusing unknown schemes with the fix."""
    scheme, sep, rest = str(spec or "").partition(":")
    if not sep or scheme not in SCHEMES or not rest.strip():
        raise EncoderError(f"unknown encoder spec {clean_uri(str(spec))!r}.", SPEC_FIX)
    return scheme, rest.strip()


def open_encoder(spec: str, prefix: str = "", batch_size: int = DEFAULT_BATCH, device: str = "cpu") -> Encoder:
    """The encoder a spec names (its backend imported only now)."""
    scheme, rest = parse_spec(spec)
    if scheme == "sentence-transformers":
        return SentenceTransformerEncoder(rest, prefix, batch_size, device)
    if scheme == "openai":
        from v2v_migrate.encoders_http import OpenAIEncoder

        return OpenAIEncoder(rest, prefix, batch_size)
    return PythonEncoder(rest, prefix, batch_size)


@contextmanager
def encoder_from(spec_or_encoder, prefix: str = ""):
    """An open encoder for a spec (closed after), an Encoder as given (the caller's to close), or None."""
    if spec_or_encoder is None or isinstance(spec_or_encoder, Encoder):
        yield spec_or_encoder
        return
    enc = open_encoder(spec_or_encoder, prefix)
    try:
        yield enc
    finally:
        enc.close()


def safe_spec(spec) -> str | None:
    """The spec as it may be written to a plan, a translator config or a report (no credentials)."""
    if not spec:
        return None
    if isinstance(spec, Encoder):
        return spec.name  # built without credentials
    scheme, rest = parse_spec(spec)
    return f"{scheme}:{clean_uri(rest)}" if scheme == "openai" else f"{scheme}:{rest}"


# ---- texts in payloads ------------------------------------------------------------------------------------
def _text(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def texts_of(payloads, field: str) -> list[str | None]:
    """The text of each row (None where the payload lacks it, or it is empty or not a string)."""
    return [_text(p.get(field)) if isinstance(p, dict) else None for p in (payloads or [])]


def fields_of(payloads) -> list[str]:
    seen: dict[str, None] = {}
    for p in payloads or []:
        if isinstance(p, dict):
            seen.update(dict.fromkeys(k for k in p if not str(k).startswith("_v2v")))
    return list(seen)


def detect_text_field(payloads, field: str | None = None) -> str:
    """The payload field that holds the text: `field` when given (checked), else the first of TEXT_FIELDS
    with text in most rows, else the string field with the longest texts. EncoderError when none has text."""
    fields = fields_of(payloads)
    shown = ", ".join(fields[:20]) or "none (the rows have no payloads)"
    if field:
        if any(texts_of(payloads, field)):
            return field
        raise EncoderError(f"payload field {field!r} holds no text in the {len(payloads or [])} sampled source rows "
                           f"(fields present: {shown}).", "pass --text-field with the field that holds the text.")
    n = max(1, len(payloads or []))
    for name in TEXT_FIELDS:
        if sum(t is not None for t in texts_of(payloads, name)) >= n / 2:
            return name
    lengths = {f: np.mean([len(t) if t else 0 for t in texts_of(payloads, f)]) for f in fields}
    best = max(lengths, key=lengths.get, default=None)
    if best is not None and lengths[best] > 0:
        return best
    raise EncoderError(f"no payload field holds text in the {len(payloads or [])} sampled source rows (tried "
                       f"{', '.join(TEXT_FIELDS[:4])}, ...; fields present: {shown}).",
                       "store the source text in the payload and pass --text-field NAME, or give --pairs FILE.")
