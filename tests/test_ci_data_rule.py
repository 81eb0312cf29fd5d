"""The shared-data rule: without ../shared/data a test that needs it skips with the reason locally, and fails
under CI (CI=true), whichever way it skips (fixture, skipif mark, module-level skip). Run as a real pytest
subprocess on a copy of this suite's conftest.py and data reader, laid out where no shared data can be found."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NEEDS_DATA = '''
import pytest
import shared_data

needs_data = pytest.mark.skipif(shared_data.data_root() is None, reason="shared reference data not found")


def test_by_fixture(real_vectors):
    assert real_vectors(3).shape == (3, 384)


@needs_data
def test_by_mark():
    assert shared_data.data_root() is not None


def test_without_data():
    assert 1 + 1 == 2


def test_other_skip():
    pytest.skip("no GPU here")
'''

MODULE_SKIP = '''
import pytest
import shared_data

if shared_data.data_root() is None:
    pytest.skip("shared reference data not found (set V2V_SHARED_DATA)", allow_module_level=True)


def test_in_a_skipped_module():
    assert True
'''


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A copy of the suite's conftest and data reader in a folder with no shared data beside or inside it."""
    root = tmp_path_factory.mktemp("nodata") / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "benchmarks").mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    shutil.copy(REPO / "benchmarks" / "shared_data.py", root / "benchmarks" / "shared_data.py")
    (root / "tests" / "test_needs_data.py").write_text(NEEDS_DATA)
    (root / "tests" / "test_module_skip.py").write_text(MODULE_SKIP)
    assert not (root.parent / "shared").exists() and not (root / "shared").exists()
    return root


def _pytest(root: Path, ci: str | None, *extra: str):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)  # `import connectors` in conftest finds this checkout's package
    env["V2V_SHARED_DATA"] = str(root / "no-such-folder")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", *extra, "tests"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_locally_missing_data_is_a_skip_with_its_reason(suite):
    res = _pytest(suite, None)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "1 passed, 4 skipped" in out
    assert out.count("shared reference data not found") == 3 and "no GPU here" in out


def test_under_ci_missing_data_fails(suite):
    ci = "true"
    # as CI runs it: the module-level skip is now a collection error, which stops the run (exit 2)
    res = _pytest(suite, ci)
    assert res.returncode == 2 and "Interrupted: 1 error during collection" in res.stdout, res.stdout
    assert "ERROR tests/test_module_skip.py" in res.stdout and "under CI that is a failure" in res.stdout
    # past the collection error: the fixture and the mark fail at set-up (errors); the test without data and the
    # other skip as before
    res = _pytest(suite, ci, "--continue-on-collection-errors")
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert "1 passed, 1 skipped, 3 errors" in out, out
    assert "SKIPPED [1] tests/test_needs_data.py:22: no GPU here" in out
    for where in ("tests/test_module_skip.py", "tests/test_needs_data.py::test_by_fixture",
                  "tests/test_needs_data.py::test_by_mark"):
        assert f"ERROR {where} - CI is set and the shared reference data is missing" in out, where


def test_ci_false_means_local(suite):
    res = _pytest(suite, "false")
    assert res.returncode == 0 and "1 passed, 4 skipped" in res.stdout, res.stdout


@pytest.mark.parametrize("value, ci", [("true", True), ("1", True), ("TRUE", True), ("yes", True),
                                       ("", False), ("0", False), ("false", False), ("no", False), (None, False)])
def test_what_counts_as_ci(monkeypatch, value, ci):
    import shared_data

    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert shared_data.in_ci() is ci
