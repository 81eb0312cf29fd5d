"""`v2v-migrate report` from the command line: a no-go verdict is a result, not an error (exit 0, the verdict and
its reasons printed), `--threshold` changes the verdict, `--plan` supplies the translator, source and target, a
bad threshold is a one-line usage error. The exit-code promises run the installed console script in a subprocess;
the rest calls the same CLI in-process (`cli.main`, argument parsing included) to stay fast. Real FAISS stores,
real embeddings."""
from __future__ import annotations

import json
import subprocess

import pytest

from _workflow_helpers import cli_env, console_script, fit_translator, need_data, rows_of, write_store
from v2v_migrate.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("report_cli")
    rows = rows_of("A", 0, 600)  # split A: the translator below is fitted on split B, so these are held out
    from translators import load_translator

    translator = str(fit_translator(root / "translator"))
    return {"root": root, "translator": translator, "fingerprint": load_translator(translator).fingerprint,
            "source": write_store(f"faiss:{root / 'source.faiss'}", rows),
            "target": write_store(f"faiss:{root / 'target.faiss'}", rows, model="e5", payloads=False)}


def _saved(world, out):
    saved = world["root"] / out / "report.json"
    return json.loads(saved.read_text()) if saved.exists() else None


def _report(world, *args, out="r"):
    """The console script in a subprocess: (CompletedProcess, report.json or None)."""
    res = subprocess.run([console_script(), "report", "--out", str(world["root"] / out), *args],
                         cwd=world["root"], env=cli_env(), capture_output=True, text=True, timeout=600)
    return res, _saved(world, out)


class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _report_here(world, capsys, *args, out="r"):
    """The same command through cli.main in this process: (result with returncode/stdout/stderr, report.json)."""
    code = main(["report", "--out", str(world["root"] / out), *args])
    captured = capsys.readouterr()
    return _Run(code, captured.out, captured.err), _saved(world, out)


def test_no_go_exits_zero_and_prints_the_verdict(world):
    # no pairs at all: quality unmeasured, so no-go for lack of evidence
    res, saved = _report(world, "--translator", world["translator"], "--source", world["source"], out="nopairs")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("verdict: NO-GO - ") and "--encoder SPEC" in first and "--pairs FILE" in first
    assert saved["verdict"]["decision"] == "no-go" and saved["quality"] is None
    assert f"report:  {world['root'] / 'nopairs' / 'report.html'}" in res.stdout
    assert (world["root"] / "nopairs" / "report.html").is_file()


def test_threshold_changes_the_verdict_through_the_cli(world, capsys):
    base = ["--translator", world["translator"], "--source", world["source"], "--target", world["target"]]
    res, saved = _report_here(world, capsys, *base, out="default")
    assert res.returncode == 0 and res.stdout.startswith("verdict: GO - every check passed"), res.stdout + res.stderr
    q = saved["quality"]
    assert q["origin"] == "target-store" and q["pairs"] == 600 and q["retention"] > q["status_quo"]

    # an absolute retention floor above what was measured: no-go, the reason names it, still exit 0
    floor = round(q["retention"] + 0.05, 3)
    res, saved = _report_here(world, capsys, *base, "--threshold", f"retention={floor}", out="floor")
    assert res.returncode == 0 and res.stdout.startswith("verdict: NO-GO - retention = "), res.stdout + res.stderr
    assert saved["thresholds"]["retention"] == floor
    assert [c["name"] for c in saved["verdict"]["checks"] if not c["passed"]] == ["retention"]

    # repeatable: two thresholds at once, each recorded and each failing its own check
    res, saved = _report_here(world, capsys, *base, "--threshold", f"retention={floor}", "--threshold", "mean_cosine=0.99",
                         out="two")
    assert res.returncode == 0 and saved["thresholds"]["mean_cosine"] == 0.99
    assert sorted(c["name"] for c in saved["verdict"]["checks"] if not c["passed"]) == ["mean_cosine", "retention"]

    # without pairs, require_pairs=0 accepts health checks alone
    res, saved = _report_here(world, capsys, "--translator", world["translator"], "--source", world["source"],
                         "--threshold", "require_pairs=0", out="health")
    assert res.returncode == 0 and res.stdout.startswith("verdict: GO - every check passed")
    assert saved["quality"] is None


@pytest.mark.parametrize("bad, needle, script", [("retension=0.5", "Unknown threshold 'retension'", True),
                                                  ("retention", "not of the form key=value", False),
                                                  ("retention=high", "is not a number", False)])
def test_bad_threshold_is_a_one_line_usage_error(world, capsys, bad, needle, script):
    args = ("--translator", world["translator"], "--source", world["source"], "--threshold", bad)
    res, saved = _report(world, *args, out="bad") if script else _report_here(world, capsys, *args, out="bad")
    assert saved is None  # refused before anything was measured or written
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0] and "Fix" in lines[0]


def test_plan_supplies_translator_source_and_target(world, capsys):
    root = world["root"]
    plan = root / "plan.toml"
    assert main(["plan", "--source", world["source"], "--target", world["target"], "--dest",
                 f"faiss:{root / 'dest.faiss'}", "--translator", world["translator"], "--out", str(plan)]) == 0
    capsys.readouterr()
    res, saved = _report_here(world, capsys, "--plan", str(plan), out="from_plan")
    assert res.returncode == 0, res.stderr
    assert saved["source"]["uri"] == world["source"] and saved["target"]["uri"] == world["target"]
    assert saved["translator"]["fingerprint"] == world["fingerprint"]
    assert saved["quality"]["origin"] == "target-store" and saved["quality"]["pairs"] == 600
    assert res.stdout.startswith(f"verdict: {saved['verdict']['decision'].upper()} - ")
    # an explicit option beats the plan: --threshold on top of --plan
    res, saved = _report_here(world, capsys, "--plan", str(plan), "--threshold", "mean_cosine=0.99", out="plan_th")
    assert res.returncode == 0 and saved["verdict"]["decision"] == "no-go"
    assert saved["source"]["uri"] == world["source"]
