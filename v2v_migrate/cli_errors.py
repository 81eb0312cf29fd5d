"""How the command line fails: every error becomes ONE line `error: <what>. Fix: <how>` on stderr (secrets
masked, no traceback unless V2V_DEBUG=1) and an exit code from v2v_migrate.errors.exit_code (the one table)."""
from __future__ import annotations

import os

import typer

from connectors.errors import StoreNotFoundError
from connectors.secrets import RedactingFilter, redact
from v2v_migrate.errors import EXIT_INTERRUPTED, KNOWN_ERRORS, exit_code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _click_exception_types() -> tuple[tuple, tuple, tuple]:
    """(Exit, Abort, ClickException) classes of typer's vendored click (typer >= 0.20) and of click."""
    import importlib

    exits, aborts, errors = [typer.Exit], [], []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for cls_name, bucket in (("Exit", exits), ("Abort", aborts), ("ClickException", errors)):
            if hasattr(mod, cls_name):
                bucket.append(getattr(mod, cls_name))
    return tuple(exits), tuple(aborts), tuple(errors)


def _error(text: str) -> None:
    """The one way an error reaches the user: one line on stderr, secrets masked."""
    typer.echo(redact(_one_line(text)), err=True)


_NOISY_LOGGERS = ("pymilvus.decorators", "pymilvus.client.connection_manager", "pymilvus.client.grpc_handler",
                  "pymilvus.milvus_client.milvus_client", "pymilvus.orm.connections")


def _drop_all(record) -> bool:
    return False


def run_app(app, argv: list[str] | None = None) -> int:
    """Run the typer app; turn every failure into one line on stderr and an exit code."""
    exits, aborts, click_errors = _click_exception_types()
    debug = bool(os.environ.get("V2V_DEBUG"))
    import logging

    logging.getLogger().addFilter(RedactingFilter())
    if not debug:
        # Engines' clients log their retries with tracebacks; our own error line says what matters.
        for name in ("pymilvus", "grpc", "qdrant_client", "httpx", "milvus_lite"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # pymilvus configures its loggers when it is imported (later, by a connector), which resets the
        # level above; filters on the loggers that log a lost server survive that.
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(_drop_all)
    try:
        rv = app(args=argv, prog_name="v2v-migrate", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0  # click returns Exit codes when not standalone
    except exits as e:
        code = e.exit_code
    except aborts:
        code = EXIT_INTERRUPTED
    except click_errors as e:  # unknown option, missing option, bad value
        if not _one_line(e.format_message()):  # no arguments at all: the help was printed
            return 2
        _error(f"error: {_one_line(e.format_message()).rstrip('.')}. Fix: see `v2v-migrate --help` "
               "or `v2v-migrate COMMAND --help`.")
        code = e.exit_code
    except KNOWN_ERRORS as e:
        _error(f"error: {e}")
        code = exit_code(e)
    except KeyboardInterrupt:
        _error("error: interrupted. Fix: run the same command again to resume.")
        code = EXIT_INTERRUPTED
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        _error(f"error: {e}. Fix: check the path and its permissions.")
        code = exit_code(StoreNotFoundError(""))
    except Exception as e:  # a bug, not a user mistake: still one line unless debugging
        if debug:
            raise
        _error(f"error: unexpected {type(e).__name__}: {e} Fix: rerun with V2V_DEBUG=1 for the traceback "
               "and report it.")
        code = exit_code(e)
    return code
