"""benchmarks/fidelity.py's goals table judges each pair on its worst 'auto' run against Procrustes."""
import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "fidelity_bench", Path(__file__).resolve().parent.parent / "benchmarks" / "fidelity.py")
fidelity = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fidelity)


def _run(method, top1, cos, wall=60.0, options="", src="a", tgt="b"):
    return {"src": src, "tgt": tgt, "method": method, "top1": top1, "mean_cosine": cos, "wall_s": wall,
            "options": options}


def _row(lines, pair):
    rows = [line for line in lines if line.startswith(f"| {pair} |")]
    assert len(rows) == 1, lines
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_goals_judged_on_the_worst_run():
    results = [_run("procrustes", 1.0, 0.70, wall=1.0),
               _run("auto", 0.99, 0.69), _run("auto", 0.97, 0.69, wall=301.0)]
    cells = _row(fidelity.goals_table(results), "a → b")
    assert cells[2] == "2"
    assert cells[5] == "97.0% **no**"          # the worse seed decides, not the mean (98%)
    assert cells[8] == "+0.0100 yes"
    assert cells[9] == "±0.0100 yes"
    assert cells[10] == "0 yes"
    assert cells[11] == "301 **no**"


def test_failed_runs_and_option_sets_are_separate_rows():
    results = [_run("procrustes", 0.9, 0.7), _run("auto", 0.9, 0.68), _run("auto", 0.3, 0.5),
               _run("auto", 0.9, 0.72, options='{"refine": true}')]
    lines = fidelity.goals_table(results)
    rows = [line for line in lines if line.startswith("| a → b |")]
    assert len(rows) == 2
    default = [c.strip() for c in rows[0].strip("|").split("|")]
    refined = [c.strip() for c in rows[1].strip("|").split("|")]
    assert default[1] == "–" and default[10] == "1 **no**" and default[9].endswith("**no**")
    assert refined[1] == '{"refine": true}' and refined[8] == "-0.0200 yes"


@pytest.mark.parametrize("results", [[], [_run("auto", 0.9, 0.6)], [_run("procrustes", 0.9, 0.6)]])
def test_no_goals_without_both_methods(results):
    assert fidelity.goals_table(results) == []


def test_one_run_has_no_seed_spread():
    cells = _row(fidelity.goals_table([_run("procrustes", 0.9, 0.6), _run("auto", 0.89, 0.59)]), "a → b")
    assert cells[9] == "– (one run)" and cells[5] == "98.9% yes"


def test_subsampled_runs_are_judged_against_their_own_procrustes():
    full = [_run("procrustes", 1.0, 0.7), _run("auto", 0.99, 0.69)]
    sub = [dict(_run("procrustes", 0.9, 0.6), rows=5900), dict(_run("auto", 0.5, 0.5), rows=5900)]
    rows = [line for line in fidelity.goals_table(full + sub) if line.startswith("| a → b |")]
    assert len(rows) == 2
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][1] == "–" and cells[0][5] == "99.0% yes"
    assert cells[1][1] == "--rows 5900" and cells[1][4] == "0.9000" and cells[1][5] == "55.6% **no**"


def test_few_pairs_table_shows_each_count_and_the_worst_share_of_procrustes():
    results = [_run("procrustes", 0.8, 0.7), _run("auto", 0.001, 0.5), _run("auto+k10", 0.4, 0.6),
               _run("auto+k10", 0.6, 0.6), _run("auto+k100", 0.72, 0.6), _run("ridge+k100", 0.7, 0.6)]
    lines = fidelity.few_pairs_table(results)
    assert "| source → target | options | 0 pairs | 10 pairs | 100 pairs | Procrustes 10k |" in lines
    cells = _row(lines, "a → b")
    assert cells[2:] == ["0.0010 (0%)", "0.4000–0.6000 (50%)", "0.7200 (90%)", "0.8000"]
    assert fidelity.few_pairs_table([_run("procrustes", 0.8, 0.7), _run("auto", 0.5, 0.5)]) == []
