"""The demo end to end on a reduced size: real data from examples/demo, real engines, rerun included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2v_migrate import demo

if any(not (demo.DATA / f).exists() for f in demo.DATA_FILES):
    pytest.skip("examples/demo data missing: run `python examples/make_demo_data.py`", allow_module_level=True)

LIMIT = 1000  # source and target rows (the full demo uses 8,000 of each); ~125 held-out pairs


def test_demo_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "demo"
    first = demo.run_demo(out, limit=LIMIT, quiet=True)
    html, js = Path(first["report_html"]), Path(first["report_json"])
    assert html.is_file() and html.is_absolute() and js.is_file()
    report = json.loads(js.read_text())
    assert report["kind"] == "after-apply"
    assert first["source_count"] == LIMIT and first["dest_count"] == first["source_count"]
    assert report["integrity"]["counts_equal"] and report["integrity"]["rows"]["vector_mismatches"] == 0
    assert set(report["verdict"]) >= {"decision", "go", "reasons", "checks"} and report["verdict"]["reasons"]
    assert first["verdict"] in ("go", "no-go") and first["pairs"] > 60
    assert report["quality"]["pairs"] == first["pairs"] and report["quality"]["retention"] is not None
    assert (out / "report-dry-run" / "report.html").is_file() and (out / "plan.toml").is_file()

    again = demo.run_demo(out, limit=LIMIT, quiet=True)  # idempotent: reuses stores and translator, resumes
    assert again["dest_uri"] == first["dest_uri"] and again["dest_count"] == LIMIT
    assert again["retention"] == pytest.approx(first["retention"])


def test_demo_without_data_says_how_to_make_it(tmp_path):
    from v2v_migrate.errors import StoreNotFoundError

    with pytest.raises(StoreNotFoundError, match="make_demo_data.py"):
        demo.run_demo(tmp_path / "out", data_dir=tmp_path / "empty", quiet=True)
