"""Helpers shared by the CLI's command modules (cli.py, cli_reembed.py): options from the plan, one-line
output, the usual refusals. No typer app here, so that command modules can import it without a circle."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from v2v_migrate.errors import UsageError


def _encoder_args(plan: dict | None, encoder, text_field, prefix) -> dict:
    """--encoder, --text-field, --encoder-prefix, falling back to the plan's [train] values."""
    from v2v_migrate.plan import plan_get

    return {"encoder": encoder or plan_get(plan, "train", "encoder"),
            "text_field": text_field or plan_get(plan, "train", "text_field"),
            "encoder_prefix": prefix if prefix is not None else plan_get(plan, "train", "encoder_prefix", "")}


def _emit(result: dict, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(text)


def _progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _options(plan: dict | None, role: str, given: list[str] | None) -> dict:
    from v2v_migrate.plan import plan_get
    from v2v_migrate.stores import parse_options

    merged = dict(plan_get(plan, "options", role, {}) or {})
    merged.update(parse_options(given, f"--{role}-option"))
    return merged


def _need(value, flag: str, command: str):
    if value in (None, ""):
        raise UsageError(f"{command} needs {flag}.", f"pass {flag} or --plan plan.toml.")
    return value


def _load_plan(path: Optional[Path]) -> dict | None:
    if path is None:
        return None
    from v2v_migrate.plan import read_plan

    return read_plan(path)
