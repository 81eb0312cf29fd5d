"""The `v2v-migrate` command line: thin commands that parse, call one library function and render.

Exit codes come from `v2v_migrate.errors.exit_code` (the one table): 0 success; 1 unexpected internal
error; 2 usage / bad input (and click's own usage errors); 3 a store that is missing, empty, unreadable or
lossy; 4 a destination locked by another apply; 5 foreign data or another migration's checkpoint;
130 interrupted (Ctrl-C / SIGTERM; apply checkpoints first and resumes on the next run).
A user mistake prints one line `error: <what>. Fix: <how>` on stderr, never a traceback, with secrets
masked (set V2V_DEBUG=1 to see tracebacks of unexpected errors).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from connectors.errors import InvalidVectorsError, StoreNotFoundError, UnreadableStoreError
from v2v_migrate.cli_common import _emit, _encoder_args, _load_plan, _need, _options, _progress
from v2v_migrate.errors import EXIT_INTERRUPTED, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Move a vector database to a new embedding model without re-embedding the source text.")

JsonOpt = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout.")
SrcOpt = typer.Option(None, "--source-option", help="Connector option for the source, KEY=VALUE (repeatable).")
DstOpt = typer.Option(None, "--dest-option", help="Connector option for the destination, KEY=VALUE (repeatable).")
TgtOpt = typer.Option(None, "--target-option", help="Connector option for the target, KEY=VALUE (repeatable).")
PlanOpt = typer.Option(None, "--plan", help="plan.toml written by `v2v-migrate plan` (explicit options win).")
EncOpt = typer.Option(None, "--encoder", help="The new model: sentence-transformers:NAME_OR_DIR | "
                                              "openai:BASE_URL#MODEL (key from V2V_ENCODER_API_KEY) | "
                                              "python:MODULE:FUNCTION.")
FieldOpt = typer.Option(None, "--text-field", help="Payload field holding the source text [detected].")
PrefixOpt = typer.Option(None, "--encoder-prefix", help="Text put before every text, e.g. 'passage: ' for e5.")


DropOpt = typer.Option(None, "--drop-vector", help="A further source vector NOT to copy (repeatable); vectors a "
                                                   "destination cannot hold must be named here.")


@app.command()
def plan(source: str = typer.Option(..., help="Store URI of the old-model vectors."),
         target: Optional[str] = typer.Option(None, help="Store URI holding vectors of the new model (optional "
                                                          "with --encoder or --pairs)."),
         dest: str = typer.Option(..., help="Store URI to write the translated vectors to."),
         out: Path = typer.Option(..., help="Where to write plan.toml."),
         pairs: Optional[Path] = typer.Option(None, help="Parquet file of known pairs (columns source, target)."),
         encoder: Optional[str] = EncOpt, text_field: Optional[str] = FieldOpt,
         encoder_prefix: Optional[str] = PrefixOpt,
         encoded_pairs: Optional[int] = typer.Option(None, help="--encoder: most source texts to embed as training "
                                                                "pairs [4,000]."),
         translator: Optional[Path] = typer.Option(None, help="Translator dir train will write [<plan dir>/translator]."),
         allow_existing: bool = typer.Option(False, help="Accept a destination that already holds other data."),
         batch_size: int = typer.Option(1024, help="Rows per batch for apply."),
         metric: Optional[str] = typer.Option(None, help="Destination metric (default: the source's)."),
         sample_size: Optional[int] = typer.Option(None, help="Training sample per side (default: up to 50,000)."),
         seed: int = typer.Option(0), state_dir: Optional[Path] = typer.Option(None, help="apply's state dir."),
         source_option: Optional[List[str]] = SrcOpt, target_option: Optional[List[str]] = TgtOpt,
         dest_option: Optional[List[str]] = DstOpt, drop_vector: Optional[List[str]] = DropOpt,
         report: Optional[Path] = typer.Option(None, "--report", help="report.json of an earlier report: its "
                                               "measured strategies feed the recommendation."),
         as_json: bool = JsonOpt):
    """Inspect source, target and destination; refuse impossible migrations; estimate; list the schema that
    will be carried; write plan.toml."""
    from v2v_migrate.plan import make_plan, summary_text, write_plan

    result = make_plan(source, target, dest, pairs_path=str(pairs) if pairs else None,
                       translator_dir=str(translator or out.resolve().parent / "translator"),
                       allow_existing=allow_existing, batch_size=batch_size, metric=metric,
                       sample_size=sample_size, seed=seed, state_dir=state_dir,
                       source_options=_options(None, "source", source_option),
                       target_options=_options(None, "target", target_option),
                       dest_options=_options(None, "dest", dest_option), drop_vectors=tuple(drop_vector or ()),
                       report_path=str(report) if report else None,
                       **_encoder_args(None, encoder, text_field, encoder_prefix), encoded_pairs=encoded_pairs)
    write_plan(result, out)
    _emit(dict(result, plan_file=str(out)), as_json, summary_text(result) + f"\nplan    written to {out}")


@app.command()
def train(plan: Optional[Path] = PlanOpt,
          source: Optional[str] = typer.Option(None, help="Store URI of the old-model vectors."),
          target: Optional[str] = typer.Option(None, help="Store URI of new-model vectors (optional with "
                                                          "--encoder or --pairs)."),
          out: Optional[Path] = typer.Option(None, help="Translator directory to write."),
          encoder: Optional[str] = EncOpt, text_field: Optional[str] = FieldOpt,
          encoder_prefix: Optional[str] = PrefixOpt,
          encoded_pairs: Optional[int] = typer.Option(None, help="--encoder: source texts to embed as training "
                                                                 "pairs [the plan's, else 4,000]."),
          method: Optional[str] = typer.Option(
              None, help="choose (default: from the known pairs) | auto (unsupervised) | procrustes | ridge | "
                         "vec2vec | identity | random."),
          pairs: Optional[Path] = typer.Option(None, help="Parquet file of known pairs (columns source, target)."),
          device: str = typer.Option("auto", help="auto|cpu|cuda."), seed: Optional[int] = typer.Option(None),
          sample_size: Optional[int] = typer.Option(None, help="Vectors sampled per side."),
          direction: str = typer.Option("old-to-new", help="old-to-new (translate stored vectors) | new-to-old "
                                        "(a query bridge; --out defaults to the plan's bridge_dir)."),
          source_option: Optional[List[str]] = SrcOpt, target_option: Optional[List[str]] = TgtOpt,
          as_json: bool = JsonOpt):
    """Sample both stores, fit a translator (or, --direction new-to-old, a query bridge) and save its directory."""
    from v2v_migrate.plan import plan_get
    from v2v_migrate.training import train_translator

    p = _load_plan(plan)
    pairs_path = pairs or plan_get(p, "train", "pairs_path")
    result = train_translator(
        _need(source or plan_get(p, "source", "uri"), "--source", "train"),
        target or plan_get(p, "target", "uri"),
        _need(out or plan_get(p, "train", "bridge_dir" if direction == "new-to-old" else "translator_dir"),
              "--out", "train"), direction=direction,
        **_encoder_args(p, encoder, text_field, encoder_prefix),
        encoded_pairs=encoded_pairs or plan_get(p, "train", "encoded_pairs"),
        method=method or plan_get(p, "train", "method", "choose"), pairs_path=pairs_path,
        sample_size=sample_size if sample_size is not None else plan_get(p, "train", "sample_size"),
        seed=seed if seed is not None else plan_get(p, "train", "seed", 0), device=device,
        progress=_progress(as_json), source_options=_options(p, "source", source_option),
        target_options=_options(p, "target", target_option))
    m = result["metrics"]
    shown = ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, (int, float)))[:300]
    health_line, warning = result["health_line"], result["health_warning"]
    _emit(result, as_json, f"trained {result['method']} {result['direction']} ({result['method_reason']})\n"
          f"samples {result['source_sample']:,} source / {result['target_sample']:,} target, "
          f"pairs {result['pairs']:,} ({result['pairs_from']})\nmetrics {shown or 'none'}\n"
          + (f"{health_line}\n" if health_line else "") + (f"WARNING {warning}\n" if warning else "")
          + f"saved   {result['out']} (fingerprint {result['fingerprint'][:12]})")


@app.command()
def apply(plan: Optional[Path] = PlanOpt,
          translator: Optional[Path] = typer.Option(None, help="Translator directory (from train)."),
          source: Optional[str] = typer.Option(None, help="Store URI of the old-model vectors."),
          dest: Optional[str] = typer.Option(None, help="Store URI to write to (created when missing)."),
          batch_size: Optional[int] = typer.Option(None, help="Rows per batch [1024]."),
          dry_run: bool = typer.Option(False, help="Check and translate a sample; write nothing."),
          resume: bool = typer.Option(True, "--resume/--restart", help="Resume from the checkpoint or start over."),
          device: str = typer.Option("auto", help="auto|cpu|cuda (auto: the GPU when there is one)."),
          metric: Optional[str] = typer.Option(None, help="Metric of a created destination [the source's]."),
          allow_existing: bool = typer.Option(False, help="Write into a destination holding other data."),
          incremental: bool = typer.Option(False, help="Copy only rows that are new or changed since the last run."),
          delete_missing: bool = typer.Option(False, help="--incremental: delete rows gone from the source."),
          state_dir: Optional[Path] = typer.Option(None, help="Checkpoints and hashes [./.v2v-state]."),
          checkpoint_seconds: float = typer.Option(2.0, help="Least seconds between flush+checkpoint commits."),
          engine: str = typer.Option("local", help="local (one process) | ray (shards on Ray actors)."),
          address: Optional[str] = typer.Option(None, help="--engine ray: Ray cluster address [start a local one]."),
          workers: int = typer.Option(2, help="--engine ray: number of shard actors."),
          filter: Optional[str] = typer.Option(None, "--filter", help="Only rows matching this filter, in the "
                                               "source engine's syntax (Milvus expression, Qdrant JSON filter)."),
          partition: Optional[List[str]] = typer.Option(None, help="Only this Milvus partition (repeatable)."),
          ids: Optional[Path] = typer.Option(None, help="Only the ids listed in this file, one per line."),
          drop_vector: Optional[List[str]] = DropOpt,
          max_rate: Optional[float] = typer.Option(None, help="Write at most this many vectors per second."),
          encoder: Optional[str] = typer.Option(None, "--encoder", help="Embed rows that have text with this new-"
                                                "model encoder instead of translating them (marked embedded)."),
          text_field: Optional[str] = FieldOpt, encoder_prefix: Optional[str] = PrefixOpt,
          lease_seconds: float = typer.Option(60.0, help="Server destinations: lease time to live (renewed "
                                              "while running; a dead holder's lease is taken over after it)."),
          source_option: Optional[List[str]] = SrcOpt, dest_option: Optional[List[str]] = DstOpt,
          as_json: bool = JsonOpt):
    """Translate every source vector (or a subset) into the destination: checkpointed, resumable, locked."""
    from v2v_migrate.plan import plan_get
    from v2v_migrate.selection import Selection

    p = _load_plan(plan)
    tdir = _need(translator or plan_get(p, "train", "translator_dir"), "--translator", "apply")
    src = _need(source or plan_get(p, "source", "uri"), "--source", "apply")
    dst = _need(dest or plan_get(p, "dest", "uri"), "--dest", "apply")
    if batch_size is None:
        batch_size = plan_get(p, "apply", "batch_size", 1024)
    selection = Selection(filter, tuple(partition or ()), str(ids) if ids else None,
                          tuple(drop_vector or plan_get(p, "apply", "drop_vectors", ()) or ()))
    common = dict(batch_size=batch_size, device=device, metric=metric, allow_existing=allow_existing,
                  restart=not resume, state_dir=state_dir, source_options=_options(p, "source", source_option),
                  dest_options=_options(p, "dest", dest_option), selection=selection)
    if dry_run:
        from v2v_migrate.dry_run import dry_run_apply

        r = dry_run_apply(tdir, src, dst, **common)
        _emit(r, as_json, f"dry run: would {r['action']} -> {r['rows_to_write']:,} rows into {r['dest']} "
              f"({r['dest_dim']}-d, {r['dest_metric']}); translated a sample of {r['sample_translated']:,} "
              f"(read {r['read_rate']:,.0f}/s, translate {r['translate_rate']:,.0f}/s); nothing written")
        return
    if engine == "ray" and encoder:
        raise UsageError("apply --encoder runs with the local engine only.", "drop --engine ray, or --encoder.")
    if engine == "ray":
        from v2v_migrate.ray_apply import run_ray_apply

        r = run_ray_apply(translator_dir=tdir, source_uri=src, dest_uri=dst, workers=workers, address=address,
                          incremental=incremental, delete_missing=delete_missing, max_rate=max_rate,
                          progress=_progress(as_json), **common)
    elif engine == "local":
        from v2v_migrate.apply import apply_migration

        r = apply_migration(tdir, src, dst, incremental=incremental, delete_missing=delete_missing,
                            commit_seconds=checkpoint_seconds, progress=_progress(as_json), max_rate=max_rate,
                            encoder=encoder, text_field=text_field, encoder_prefix=encoder_prefix or "",
                            lease_seconds=lease_seconds, **common)
    else:
        raise UsageError(f"--engine must be local or ray, got {engine!r}.", "pass --engine local or --engine ray.")
    if r.get("already_complete"):
        text = f"nothing to do: {r['dest']} is complete ({r['dest_count']:,} rows); --incremental copies new rows"
    else:
        state = "interrupted (resume by running the same command)" if r["interrupted"] else "done"
        text = (f"{state}: read {r['rows_read']:,}, wrote {r['rows_written']:,}, skipped {r['rows_skipped']:,} "
                f"in {r['seconds']:.1f}s ({r['rate']:,.0f} rows/s); destination holds {r['dest_count']:,}")
        if r.get("rows_embedded"):
            text += f"\n{r['rows_embedded']:,} rows with text were embedded by the encoder instead (marked)"
        if r.get("ids_missing"):
            text += f"\n{r['ids_missing']:,} listed ids are not in the source"
        if r.get("schema_carried") or r.get("schema_not_carried"):
            text += ("\nschema  carried: " + ("; ".join(r.get("schema_carried") or []) or "nothing")
                     + ("\n        not carried: " + "; ".join(r["schema_not_carried"]) if r.get("schema_not_carried") else ""))
        if r.get("deleted_in_source"):
            text += (f"\n{r['deleted_in_source']:,} ids were deleted from the source "
                     f"({r['deleted_from_dest']:,} deleted from the destination; list: {r['deleted_ids_file']})")
    _emit(r, as_json, text)
    if r["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def report(plan: Optional[Path] = PlanOpt,
           translator: Optional[Path] = typer.Option(None, help="Translator directory."),
           source: Optional[str] = typer.Option(None, help="Store URI of the old-model vectors."),
           dest: Optional[str] = typer.Option(None, help="Migrated store (after apply); omit for a dry run."),
           target: Optional[str] = typer.Option(None, help="Store of new-model vectors (for retrieval checks)."),
           pairs: Optional[Path] = typer.Option(None, help="Parquet file of known pairs."),
           encoder: Optional[str] = EncOpt, text_field: Optional[str] = FieldOpt,
           encoder_prefix: Optional[str] = PrefixOpt,
           held_out: int = typer.Option(1000, help="--encoder: held-out source texts to embed as pairs."),
           bridge: Optional[Path] = typer.Option(None, help="Query bridge (train --direction new-to-old) to compare "
                                                 "[the plan's bridge_dir when it exists]."),
           out: Path = typer.Option(..., help="Folder for report.json and report.html."),
           sample_size: Optional[int] = typer.Option(None, help="Rows sampled for the checks."),
           threshold: Optional[List[str]] = typer.Option(
               None, help="Verdict threshold KEY=VALUE (repeatable), e.g. retention=0.8; report.html lists the keys."),
           source_option: Optional[List[str]] = SrcOpt, target_option: Optional[List[str]] = TgtOpt,
           dest_option: Optional[List[str]] = DstOpt, as_json: bool = JsonOpt):
    """Fidelity and retrieval quality (report.json + report.html), before cutover or after apply."""
    from v2v_migrate.plan import plan_get
    from v2v_migrate.report import build_report

    p = _load_plan(plan)
    kw = {}
    if sample_size is not None:
        kw["sample_size"] = sample_size
    if threshold:
        kw["thresholds"] = list(threshold)
    opts = {role: _options(p, role, given) for role, given in
            (("source", source_option), ("target", target_option), ("dest", dest_option))}
    if any(opts.values()):
        kw["store_options"] = opts
    pairs_path = pairs or plan_get(p, "train", "pairs_path")
    bridge = bridge or (plan_get(p, "train", "bridge_dir") if Path(plan_get(p, "train", "bridge_dir") or "-",
                                                                    "config.json").is_file() else None)
    r = build_report(bridge_dir=str(bridge) if bridge else None, translator_dir=str(_need(translator or plan_get(p, "train", "translator_dir"),
                                              "--translator", "report")),
                     source_uri=_need(source or plan_get(p, "source", "uri"), "--source", "report"),
                     out_dir=str(out), dest_uri=dest, target_uri=target or plan_get(p, "target", "uri"),
                     pairs_path=str(pairs_path) if pairs_path else None, held_out=held_out,
                     progress=_progress(as_json), **_encoder_args(p, encoder, text_field, encoder_prefix), **kw)
    v = r.get("verdict") or {}
    decision = v.get("decision") if isinstance(v, dict) else v
    reasons = "; ".join(v.get("reasons") or []) if isinstance(v, dict) else ""
    html = (r.get("files") or {}).get("html") or (out / "report.html")
    done = r.get("reembedded") or {}
    share = (f"re-embedded: {done['share']:.1%} of the sampled rows ({done['embedded']:,} of {done['present']:,})\n"
             if done.get("embedded") else "")
    rec = (r.get("strategies") or {}).get("recommendation")
    _emit(r, as_json, f"verdict: {str(decision).upper()}{' - ' + reasons if reasons else ''}\n" + share
          + (f"strategy: {rec['strategy']} - {'; '.join(rec['reasons'])}\n" if rec else "") + f"report:  {html}")


@app.command()
def status(dest: str = typer.Option(..., help="Store URI of the destination."),
           state_dir: Optional[Path] = typer.Option(None, help="Local state dir, read when the destination "
                                                               "cannot be [./.v2v-state]."),
           dest_option: Optional[List[str]] = DstOpt, as_json: bool = JsonOpt):
    """Who owns a destination, its progress, its lease holder and its last error (read-only)."""
    from v2v_migrate.status import destination_status, render_status

    r = destination_status(dest, _options(None, "dest", dest_option), state_dir)
    _emit(r, as_json, render_status(r))


def _load_npy(path: Path, flag: str):
    import numpy as np

    if not path.is_file():
        raise StoreNotFoundError(f"{flag} file {path} does not exist.", f"fix {flag}.")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UnreadableStoreError(f"{path} is not a .npy array ({str(e).splitlines()[0]}).",
                                   f"pass a float array saved with numpy.save as {flag}.") from None


@app.command()
def translate(translator: Path = typer.Option(..., help="Translator directory."),
              input: Path = typer.Option(..., help="Source-model vectors, .npy (n, d_src)."),
              output: Path = typer.Option(..., help="Where to write the translated .npy (n, d_tgt)."),
              device: str = typer.Option("auto"), as_json: bool = JsonOpt):
    """Translate a .npy file of vectors."""
    import numpy as np

    from connectors.base import validate_vectors
    from translators import load_translator

    t = load_translator(translator, device)
    x = _load_npy(input, "--input")
    if x.ndim != 2 or x.shape[1] != t.source_dim:
        validate_vectors(x[:1] if x.ndim == 2 else x, t.source_dim, where=str(input))  # raises the typed error
    output.parent.mkdir(parents=True, exist_ok=True)
    # Chunked through memory maps: files larger than RAM translate in bounded memory.
    y = np.lib.format.open_memmap(output, mode="w+", dtype=np.float32, shape=(len(x), t.target_dim))
    for start in range(0, len(x), 65536):
        chunk = validate_vectors(np.array(x[start:start + 65536]), t.source_dim, where=str(input))
        y[start:start + len(chunk)] = t(chunk)
    y.flush()
    _emit({"rows": len(y), "source_dim": t.source_dim, "target_dim": t.target_dim, "output": str(output)},
          as_json, f"translated {len(y):,} vectors {t.source_dim}-d -> {t.target_dim}-d into {output}")


@app.command()
def evaluate(translator: Path = typer.Option(..., help="Translator directory."),
             source: Path = typer.Option(..., help="Source-model vectors .npy (n, d_src)."),
             target: Path = typer.Option(..., help="Target-model vectors of the same texts .npy (n, d_tgt)."),
             device: str = typer.Option("auto"), as_json: bool = JsonOpt):
    """Paired metrics of a translator on known pairs (mean_cosine, top1, mean_rank)."""
    import numpy as np

    from connectors.base import validate_vectors
    from translators import load_translator
    from translators.metrics import paired_metrics

    t = load_translator(translator, device)
    x = validate_vectors(np.array(_load_npy(source, "--source")), t.source_dim, where=str(source))
    y = validate_vectors(np.array(_load_npy(target, "--target")), t.target_dim, where=str(target))
    if len(x) != len(y):
        raise InvalidVectorsError(f"--source has {len(x)} rows but --target has {len(y)}.",
                                  "pass the two models' vectors of the same texts, same order.")
    m = paired_metrics(t(x), y)
    _emit(m, as_json, "\n".join(f"{k:12s} {v:.4f}" if isinstance(v, float) else f"{k:12s} {v}"
                                for k, v in m.items()))


@app.command()
def demo(out: Path = typer.Option(Path("demo-out"), help="Folder for the demo's stores and report."),
         rows: Optional[int] = typer.Option(None, help="Use only the first N old and new vectors (a quick "
                                                       "check; the full demo uses 8,000 of each)."),
         as_json: bool = JsonOpt):
    """End-to-end demo on the bundled reference data: plan, train, apply, report."""
    from v2v_migrate.demo import run_demo

    if rows is not None and rows < 300:
        raise UsageError(f"--rows {rows} is too few for a translator.", "pass --rows 300 or more, or omit it.")
    r = run_demo(str(out), limit=rows, quiet=as_json)  # the demo narrates its steps unless --json
    u = r.get("unsupervised_path") or {}
    head = "encoder path" if r.get("encoder_path") else "unsupervised path (encoder path skipped)"
    _emit(r, as_json, f"demo done: verdict {str(r.get('verdict')).upper()} ({head}); unsupervised path "
          f"{str(u.get('verdict')).upper()}; see {r.get('report_html') or out}")


from v2v_migrate.cli_reembed import reembed  # noqa: E402  (its own module; registered here)

app.command()(reembed)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and turns every failure into one line and an exit code."""
    from v2v_migrate.cli_errors import run_app

    return run_app(app, argv)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
