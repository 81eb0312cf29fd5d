"""plan: inspect the source, target and destination, refuse impossible migrations, estimate, write plan.toml.

The plan file is plain TOML that `train`, `apply` and `report` accept with `--plan` (their own options win).
It never holds credentials: server URIs are stripped of user:password@ and secret-looking parameters, and
connector options whose names look secret are left out.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from connectors.errors import DestinationNotEmptyError, DimensionMismatchError
from connectors.secrets import clean_options
from translators.errors import TrainingError
from v2v_migrate.carry import carry_to
from v2v_migrate.checkpoint import load_checkpoint, normalize_uri, state_dir_for
from v2v_migrate.errors import UsageError
from v2v_migrate.pairs import HOLDOUT_FRACTION, read_pairs, split_pairs
from v2v_migrate.stores import open_existing
from v2v_migrate.report_quality import HELD_OUT_TEXTS
from v2v_migrate.training import DEFAULT_ENCODED_PAIRS, DEFAULT_SAMPLE_SIZE, MIN_ID_PAIRS, choose_method

PLAN_VERSION = 1
QUEUE_DEPTH = 4
ENCODER_PROBE_TEXTS = 128  # texts timed to estimate the encoding time (after a warm-up batch)


def _vector_stats(vectors: np.ndarray) -> dict:
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.maximum(norms[:, None], 1e-12)
    mean_len = float(np.linalg.norm(unit.mean(axis=0)))
    return {"sample_rows": int(len(vectors)), "norm_mean": round(float(norms.mean()), 4),
            "norm_min": round(float(norms.min()), 4), "norm_max": round(float(norms.max()), 4),
            "unit_length": bool(np.all(np.abs(norms - 1.0) < 1e-2)),
            # Sentence encoders put vectors in a narrow cone: a long mean direction = not centred.
            "mean_direction_length": round(mean_len, 4), "centred": bool(mean_len < 0.1)}


def _describe(store, sample) -> dict:
    out = {"uri": normalize_uri(store.uri), "count": int(store.count()), "dim": int(store.dim),
           "metric": str(store.metric), "id_type": str(store.id_type),
           "payload_fields": [f for f in store.payload_fields() if not f.startswith("_v2v")]}
    out.update(_vector_stats(sample.vectors))
    return out


def _read_rate(store, batch_size: int, rows: int) -> float:
    t0, got = time.perf_counter(), 0
    for b in store.iter_batches(batch_size):
        got += len(b)
        if got >= rows:
            break
    return got / max(time.perf_counter() - t0, 1e-9)


def _translate_rate(d_s: int, d_t: int, rows: int) -> float:
    """Rows/s of a linear map of these dims on this machine (the translator is not trained yet)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, d_s), dtype=np.float32)
    w = rng.standard_normal((d_s, d_t), dtype=np.float32)
    t0 = time.perf_counter()
    y = x @ w
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return rows / max(time.perf_counter() - t0, 1e-9)


def _encoder_probe(spec: str, prefix: str, text_field: str | None, sample, count: int, budget: int,
                   target_dim: int | None) -> dict:
    """Open the encoder, find the text field, time it on a few rows: how many pairs, how long."""
    from v2v_migrate.encoders import detect_text_field, encoder_from, safe_spec, texts_of

    with encoder_from(spec, prefix) as enc:
        field = detect_text_field(sample.payloads, text_field)
        texts = [t for t in texts_of(sample.payloads, field) if t is not None]
        rate = enc.rate(texts[:ENCODER_PROBE_TEXTS], warmup=32)
        dim = enc.dim
    if target_dim is not None and dim != target_dim:
        raise DimensionMismatchError(f"the encoder returns {dim}-d vectors but the target store holds {target_dim}-d.",
                                     "pass the encoder of the new model whose vectors the target holds.")
    with_text = len(texts) / max(1, len(sample))
    available = int(count * with_text * (1 - HOLDOUT_FRACTION))
    pairs = int(min(budget, available))
    return {"spec": safe_spec(spec), "text_field": field, "prefix": getattr(spec, "prefix", prefix) or "",
            "dim": int(dim),
            "texts_per_second": round(rate, 1), "rows_with_text": round(with_text, 4), "pairs": pairs,
            "train_seconds": round(pairs / rate, 1), "report_seconds": round(HELD_OUT_TEXTS / rate, 1)}


def make_plan(source_uri: str, target_uri: str | None, dest_uri: str, *, pairs_path: str | None = None,
              translator_dir: str | None = None, allow_existing: bool = False, batch_size: int = 1024,
              metric: str | None = None, sample_size: int | None = None, seed: int = 0,
              state_dir: str | None = None, probe_rows: int = 4096, source_options: dict | None = None,
              target_options: dict | None = None, dest_options: dict | None = None, encoder: str | None = None,
              text_field: str | None = None, encoder_prefix: str = "", encoded_pairs: int | None = None,
              drop_vectors: tuple = (), report_path: str | None = None) -> dict:
    from connectors import check_metric, open_store
    from translators import MIN_UNSUPERVISED

    if normalize_uri(source_uri) == normalize_uri(dest_uri):
        raise UsageError("The source and the destination are the same store.",
                         "write to a new destination; the source stays read-only.")
    if not (target_uri or pairs_path or encoder):
        raise UsageError("plan needs the new model's side: --target, --pairs or --encoder.",
                         "pass --encoder SPEC (the new model embeds source texts), --pairs FILE or --target URI.")
    source = open_existing(source_uri, "source", source_options)
    target = open_existing(target_uri, "target", target_options) if target_uri else None
    dest = open_store(dest_uri, **(dest_options or {}))
    try:
        s_sample = source.sample(min(probe_rows, source.count()), seed=seed)
        src = _describe(source, s_sample)
        tgt = _describe(target, target.sample(min(probe_rows, target.count()), seed=seed)) if target else None

        # Pairs: a file, ids both stores hold (probed on the source sample), the encoder's.
        n_pairs, pairs_from, enc, pairs_dim = 0, "none", None, None
        if pairs_path:
            known = read_pairs(pairs_path, src["dim"], tgt["dim"] if tgt else None)
            n_pairs, pairs_from, pairs_dim = len(split_pairs(known, False)), "file", known.y.shape[1]
        overlap = len(target.get(list(s_sample.ids[:1000]))) if target is not None and len(s_sample) else 0
        size = int(sample_size or min(DEFAULT_SAMPLE_SIZE, max(src["count"], tgt["count"] if tgt else 0)))
        if not pairs_path and overlap:
            # train fits on the ids outside the held-out part (report measures on those)
            expected = int(overlap / min(1000, len(s_sample)) * min(size, src["count"]) * (1 - HOLDOUT_FRACTION))
            if expected >= MIN_ID_PAIRS:
                n_pairs, pairs_from = expected, "ids"
        if encoder:
            enc = _encoder_probe(encoder, encoder_prefix, text_field, s_sample, src["count"],
                                 int(encoded_pairs or DEFAULT_ENCODED_PAIRS), tgt["dim"] if tgt else None)
            n_pairs += enc["pairs"]
            pairs_from = "encoder" if pairs_from == "none" else f"{pairs_from} + encoder"
        new_dim = tgt["dim"] if tgt else (enc["dim"] if enc else pairs_dim)
        if (tgt is None or tgt["count"] < MIN_UNSUPERVISED) and n_pairs < 2:
            held = f"the target holds only {tgt['count']} vectors" if tgt else "no --target store was given"
            raise TrainingError(f"{held} and no pairs were found; learning a translator without pairs needs at "
                                f"least {MIN_UNSUPERVISED} new-model vectors (a few thousand are better).",
                                "pass --encoder SPEC (source texts embedded by the new model) or --pairs FILE.")
        method, reason = choose_method(n_pairs)
        # Before train spends minutes: can this pair be aligned without pairs at all? (label-free, ~1 s)
        alignability = _alignability(s_sample, target, seed)

        # Destination: compatible? holding data we did not write?
        out_metric = check_metric(metric or src["metric"])
        d = {"uri": normalize_uri(dest_uri), "exists": bool(dest.exists())}
        if d["exists"]:
            d.update(count=int(dest.count()), dim=int(dest.dim), metric=str(dest.metric))
            if d["dim"] != new_dim:
                raise DimensionMismatchError(
                    f"Destination {dest_uri} holds {d['dim']}-d vectors; the translator will output "
                    f"{new_dim}-d (the new model's dimension).", "choose a new destination for the new model.")
            if metric and check_metric(d["metric"]) != out_metric:
                raise UsageError(f"Destination uses metric {d['metric']}, not {metric}.",
                                 "drop --metric or choose a new destination.")
            out_metric = check_metric(d["metric"])
            from v2v_migrate.dest_state import load_dest_checkpoint  # the destination's own record first

            cp = load_dest_checkpoint(dest) or load_checkpoint(state_dir_for(dest_uri, state_dir))
            if d["count"] and cp is None and not allow_existing:
                raise DestinationNotEmptyError(
                    f"Destination {dest_uri} already holds {d['count']} vectors this migration did not write.",
                    "choose a new destination, or pass --allow-existing to write into it.")
            d["action"] = "resume (checkpoint found)" if cp is not None else "write into the existing destination"
        else:
            d["action"] = "create"
        d.update(dim=new_dim, metric=out_metric, id_type=src["id_type"])
        carried = carry_to(source, dest, new_dim, out_metric, tuple(drop_vectors))
        # A created destination keeps this of the source's schema (an existing one keeps its own).
        d["schema"] = {"carried": carried["carried"], "not_carried": carried["not_carried"],
                       "applies": not d["exists"]}

        read_rate = _read_rate(source, batch_size, probe_rows)
        tr_rate = _translate_rate(src["dim"], new_dim, min(probe_rows, 8192))
        payload_bytes = 0
        if s_sample.payloads:
            payload_bytes = int(np.mean([len(json.dumps(p, default=str)) for p in s_sample.payloads]))
        n = src["count"]
        in_flight = (2 * QUEUE_DEPTH + 3) * batch_size * ((src["dim"] + new_dim) * 4 + payload_bytes)
        train_mem = size * 2 * (src["dim"] + new_dim) * 4 * 3
        estimate = {
            "read_rate": round(read_rate, 1), "translate_rate_linear": round(tr_rate, 1),
            "apply_seconds_read_translate": round(n / min(read_rate, tr_rate), 1),
            "dest_disk_bytes": int(n * (new_dim * 4 + payload_bytes + 16) * 1.3),
            "apply_memory_bytes": int(in_flight), "train_memory_bytes": int(train_mem),
            "notes": "seconds exclude the destination's write rate (unknown before apply) and assume a "
                     "linear translator; vec2vec-style MLPs translate several times slower on CPU.",
        }
        created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        plan = {
            "version": PLAN_VERSION, "created": created,
            "source": src, "target": tgt or {}, "dest": d,
            "train": {"method": method, "method_reason": reason, "pairs_from": pairs_from, "pairs": int(n_pairs),
                      "id_overlap_in_probe": int(overlap), "sample_size": size, "seed": int(seed),
                      "alignability": alignability,
                      "translator_dir": str(Path(translator_dir or "translator").resolve()),
                      # where `train --direction new-to-old --plan` writes the query bridge
                      "bridge_dir": str(Path(translator_dir or "translator").resolve().parent / "bridge")},
            "apply": {"batch_size": int(batch_size), "metric": out_metric,
                      **({"drop_vectors": sorted(drop_vectors)} if drop_vectors else {})},
            "estimate": estimate,
            "options": {"source": clean_options(source_options), "target": clean_options(target_options),
                        "dest": clean_options(dest_options)},
        }
        if pairs_path:
            plan["train"]["pairs_path"] = str(Path(pairs_path).resolve())
        if enc:  # no key here: the openai key stays in V2V_ENCODER_API_KEY
            plan["train"].update(encoder=enc["spec"], text_field=enc["text_field"], encoder_prefix=enc["prefix"],
                                 encoded_pairs=enc["pairs"])
            estimate.update(encoder_texts_per_second=enc["texts_per_second"],
                            encode_seconds_train=enc["train_seconds"], encode_seconds_report=enc["report_seconds"],
                            source_rows_with_text=enc["rows_with_text"])
        plan["strategy"] = _strategy(s_sample, src, new_dim, enc, text_field, read_rate, tr_rate, report_path)
        return plan
    finally:
        source.close()
        if target is not None:
            target.close()
        dest.close()


def _strategy(s_sample, src, new_dim, enc, text_field, read_rate, tr_rate, report_path) -> dict:
    """Status quo, bridge, migrate or re-embed: costs from rates timed here (writes into a scratch Parquet
    dataset), retention from an earlier report (--report) when given; v2v_migrate.strategies decides."""
    from v2v_migrate import strategies_report as sr

    scratch = np.random.default_rng(0).standard_normal((min(4096, max(len(s_sample), 1)), new_dim), dtype=np.float32)
    rates = {"read": read_rate, "translate": tr_rate, "bridge": _translate_rate(new_dim, src["dim"], 4096),
             "encode": enc["texts_per_second"] if enc else None, "write": sr.write_rate(scratch)}
    share = enc["rows_with_text"] if enc else sr.text_share(s_sample.payloads, text_field)
    return sr.plan_section(src["count"], rates, share, report_path)


def _alignability(s_sample, target, seed: int) -> dict:
    """translators.alignability's label-free probe on the source sample and as many target rows."""
    from translators.alignability import probe

    if target is None or not len(s_sample):
        return {"alignable": True, "decided": False, "reason": "no target vectors to probe"}
    t_rows = target.sample(min(len(s_sample), target.count()), seed=seed)
    return probe(s_sample.vectors, t_rows.vectors, seed=seed)


def write_plan(plan: dict, path: str | os.PathLike) -> Path:
    import tomli_w

    from v2v_migrate.checkpoint import atomic_write_text

    p = Path(path)
    atomic_write_text(p, tomli_w.dumps(plan))
    return p


def read_plan(path: str | os.PathLike) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as a package (a dependency there)
        import tomli as tomllib

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"Plan file {p} does not exist.", "write one with `v2v-migrate plan ... --out plan.toml`.")
    try:
        plan = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"Plan file {p} is not valid TOML ({e}).",
                         "rewrite it with `v2v-migrate plan ... --out plan.toml`.") from None
    if plan.get("version") != PLAN_VERSION:
        raise UsageError(f"Plan file {p} has version {plan.get('version')!r}, expected {PLAN_VERSION}.",
                         "rewrite it with `v2v-migrate plan ... --out plan.toml`.")
    for section, key in (("source", "uri"), ("dest", "uri"), ("train", "translator_dir")):
        if not isinstance(plan.get(section), dict) or not isinstance(plan[section].get(key), str):
            raise UsageError(f"Plan file {p} lacks [{section}] {key}.",
                             "rewrite it with `v2v-migrate plan ... --out plan.toml`.")
    return plan


def plan_get(plan: dict | None, section: str, key: str, default: Any = None) -> Any:
    if not plan:
        return default
    return plan.get(section, {}).get(key, default)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _schema_lines(schema: dict | None) -> list[str]:
    """What `apply` will carry to a created destination, and what it cannot."""
    if not schema or not schema.get("applies"):
        return []
    return [f"schema  carried: {'; '.join(schema['carried']) or 'nothing beyond the vectors'}",
            *([f"        not carried: {'; '.join(schema['not_carried'])}"] if schema["not_carried"] else [])]


def summary_text(plan: dict) -> str:
    """What a person reads in 30 seconds."""
    s, t, d, tr, e = plan["source"], plan["target"], plan["dest"], plan["train"], plan["estimate"]

    def shape(x: dict) -> str:
        tags = ["unit-length" if x["unit_length"] else f"norms {x['norm_min']}..{x['norm_max']}",
                "centred" if x["centred"] else "not centred"]
        return f"{x['count']:,} x {x['dim']}-d, {x['metric']}, {x['id_type']} ids, {', '.join(tags)}"

    fields = ", ".join(s["payload_fields"]) or "none"
    mins = e["apply_seconds_read_translate"] / 60
    return "\n".join([
        f"source  {s['uri']}\n        {shape(s)}; payload fields: {fields}",
        (f"target  {t['uri']}\n        {shape(t)}" if t.get("uri") else
         "target  none: the new model's side comes from the pairs"),
        f"dest    {d['uri']}\n        {d['action']}: {d['dim']}-d, {d['metric']}, {d['id_type']} ids",
        *_schema_lines(d.get("schema")),
        f"train   method {tr['method']} ({tr['method_reason']}); sample {tr['sample_size']:,} "
        f"{'per side' if t.get('uri') else 'source rows'}; "
        f"pairs: {tr['pairs']:,} from {tr['pairs_from']}",
        *([f"encode  {tr['encoder']}, field {tr['text_field']!r} ({100 * e['source_rows_with_text']:.0f} % of rows "
           f"have text): {e['encoder_texts_per_second']:,.1f} texts/s here -> ~{e['encode_seconds_train'] / 60:.1f} "
           f"min for {tr['encoded_pairs']:,} training pairs, ~{e['encode_seconds_report'] / 60:.1f} min for the "
           "report's held-out texts"] if tr.get("encoder") else []),
        f"apply   ~{mins:.1f} min to read+translate at {e['read_rate']:,.0f} rows/s read, "
        f"{e['translate_rate_linear']:,.0f} rows/s translate (plus write time); "
        f"dest disk ~{_size(e['dest_disk_bytes'])}; apply memory ~{_size(e['apply_memory_bytes'])}, "
        f"train memory ~{_size(e['train_memory_bytes'])}",
        *_alignability_warning(tr), *_strategy_lines(plan.get("strategy")),
        "next    v2v-migrate train --plan PLAN && v2v-migrate apply --plan PLAN",
    ])


def _strategy_lines(s: dict | None) -> list[str]:
    if not s:
        return []
    rec, c = s["recommendation"], s["costs"]
    when = {k: f"~{c[k]['seconds'] / 60:.1f} min" if "seconds" in c[k] else "time unknown" for k in ("migrate", "reembed")}
    return [f"strategy {rec['strategy']}: {'; '.join(rec['reasons'])} (migrate {when['migrate']}, re-embed "
            f"{when['reembed']} at {c['reembed']['writes']:,} writes; bridge and status quo write nothing)"]


def _alignability_warning(train: dict) -> list[str]:
    probe = train.get("alignability") or {}
    if probe.get("alignable", True) or train["method"] == "ridge":
        return []
    return [f"warning this pair needs pairs: pass --encoder or --pairs ({probe['reason']}; "
            f"{train['pairs']:,} pairs found)"]
