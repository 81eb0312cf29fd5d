"""The `v2v-migrate reembed` command (kept apart so that cli.py stays small): parse, call
v2v_migrate.reembed.reembed, render."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from v2v_migrate.errors import EXIT_INTERRUPTED


def reembed(plan: Optional[Path] = typer.Option(None, "--plan", help="plan.toml written by `v2v-migrate plan` "
                                                                     "(explicit options win)."),
            source: Optional[str] = typer.Option(None, help="Store URI of the old-model vectors and their texts."),
            dest: Optional[str] = typer.Option(None, help="The migrated store whose vectors to re-embed."),
            encoder: Optional[str] = typer.Option(None, "--encoder", help="The new model (as for train): "
                                                  "sentence-transformers:NAME_OR_DIR | openai:BASE_URL#MODEL | "
                                                  "python:MODULE:FUNCTION."),
            text_field: Optional[str] = typer.Option(None, "--text-field", help="Payload field holding the source "
                                                     "text (detected when not given)."),
            encoder_prefix: Optional[str] = typer.Option(None, "--encoder-prefix", help="Text put before every "
                                                         "text, e.g. 'passage: ' for e5."),
            batch_size: int = typer.Option(256, help="Rows per batch."),
            max_rows: Optional[int] = typer.Option(None, help="Embed at most this many rows in this run."),
            max_seconds: Optional[float] = typer.Option(None, help="Stop after this many seconds (after the "
                                                        "batch in flight)."),
            max_rate: Optional[float] = typer.Option(None, help="Write at most this many vectors per second."),
            order: Optional[Path] = typer.Option(None, "--order", help="Ids to embed first, one per line."),
            resume: bool = typer.Option(True, "--resume/--restart", help="Continue the last pass or start a new one "
                                        "(rows already embedded are skipped either way)."),
            state_dir: Optional[Path] = typer.Option(None, help="Where progress is kept [./.v2v-state]."),
            checkpoint_seconds: float = typer.Option(2.0, help="Least seconds between flush+record commits."),
            source_option: Optional[List[str]] = typer.Option(None, "--source-option", help="Connector option for "
                                                              "the source, KEY=VALUE (repeatable)."),
            dest_option: Optional[List[str]] = typer.Option(None, "--dest-option", help="Connector option for the "
                                                            "destination, KEY=VALUE (repeatable)."),
            as_json: bool = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout.")):
    """Replace translated vectors with the new model's own, a slice per run (resumable, --max-rows/--max-seconds)."""
    from v2v_migrate.cli_common import _emit, _encoder_args, _load_plan, _need, _options, _progress
    from v2v_migrate.plan import plan_get
    from v2v_migrate.reembed import reembed as run

    p = _load_plan(plan)
    enc = _encoder_args(p, encoder, text_field, encoder_prefix)
    r = run(_need(source or plan_get(p, "source", "uri"), "--source", "reembed"),
            _need(dest or plan_get(p, "dest", "uri"), "--dest", "reembed"),
            _need(enc["encoder"], "--encoder", "reembed"), text_field=enc["text_field"],
            encoder_prefix=enc["encoder_prefix"] or "", batch_size=batch_size, max_rows=max_rows,
            max_seconds=max_seconds, max_rate=max_rate, order_file=order,
            state_dir=state_dir, restart=not resume,
            commit_seconds=checkpoint_seconds, source_options=_options(p, "source", source_option),
            dest_options=_options(p, "dest", dest_option), progress=_progress(as_json))
    _emit(r, as_json, summary_text(r))
    if r["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)


def summary_text(r: dict) -> str:
    state = {"done": "pass complete", "max_rows": "stopped at --max-rows", "max_seconds": "stopped at --max-seconds",
             "interrupted": "interrupted (resume by running the same command)"}[r["stopped_by"]]
    c = r["pass_counts"]
    text = (f"{state}: embedded {r['embedded']:,} rows in {r['seconds']:.1f}s ({r['rate']:,.0f}/s) with "
            f"{r['model']}; read {r['rows_read']:,}, already embedded {r['already_embedded']:,}, "
            f"no text {r['no_text']:,}\npass {r['pass']} so far: {c['embedded']:,} embedded, {c['already']:,} "
            f"already, {c['no_text']:,} without text (stay translated), {c['not_in_dest']:,} not in the "
            f"destination")
    if r.get("order_ids_missing"):
        text += f"\n{r['order_ids_missing']:,} ids of --order are not in the source"
    return text
