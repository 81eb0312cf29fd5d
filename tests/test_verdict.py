"""Each verdict check on its own: from a report where every check passes, one figure is moved to its threshold
(the check still passes: the bounds are inclusive) and just past it (that check, and no other, fails; the
verdict is no-go and its reason names the check). Thresholds are written out here, as the README and
report_verdict's table state them, not read back from the module under test.

The figures are report.json's own fields, so these inputs are what build_report hands to the verdict; the
end-to-end cases (real stores: a tampered row, a random translator, no pairs) are in test_report.py, and one
integrity check on a real destination is at the end of this file.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from v2v_migrate.report_verdict import parse_thresholds, verdict

EPS = 1e-4


def _passing() -> dict:
    """A report (the fields the verdict reads) where every check passes with room to spare."""
    return {
        "health": {"non_finite_rows": 0, "neighbour_overlap": {"mean": 0.55},
                   "nearest_target_similarity": {"ratio": 0.97}, "mean_pairwise_cosine_translated": 0.25},
        "quality": {"retention": 0.45, "status_quo": 0.40, "retention_minus_status_quo_se": 0.01, "queries": 500,
                    "known_item": {"top1": 0.95}, "top1": 0.90, "mean_cosine": 0.70, "pool": 1000},
        "integrity": {"counts_equal": True, "dest_count": 1000, "source_count": 1000,
                      "rows": {"missing": 0, "vector_mismatches": 0, "payload_mismatches": 0, "non_finite": 0}},
        "ann": {"measured": True, "recall": 0.97},
    }


def _set(report: dict, path: str, value) -> dict:
    out = copy.deepcopy(report)
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[leaf] = value
    return out


def _failed(report: dict, **thresholds) -> list[str]:
    v = verdict(report, parse_thresholds(thresholds))
    names = [c["name"] for c in v["checks"] if not c["passed"]]
    assert v["go"] is (not names) and v["decision"] == ("no-go" if names else "go")
    assert len(v["reasons"]) == max(len(names), 1)
    return names


def test_the_baseline_passes_every_check():
    v = verdict(_passing(), parse_thresholds(None))
    assert v["decision"] == "go" and v["reasons"][0].startswith("every check passed: retention 0.450")
    assert [c["name"] for c in v["checks"]] == [
        "non_finite", "neighbour_overlap", "target_proximity", "collapse", "retention_vs_status_quo",
        "known_item_top1", "top1", "mean_cosine", "count_equal", "missing_rows", "mismatched_rows",
        "stored_non_finite", "ann_recall"]


# (check, field, value at the bound: passes, value just past it: fails). Bounds: README / report_verdict table;
# retention vs status quo: status quo 0.40 minus two standard errors (2 x 0.01) = 0.38.
BOUNDS = [
    ("non_finite", "health.non_finite_rows", 0, 1),
    ("neighbour_overlap", "health.neighbour_overlap.mean", 0.20, 0.20 - EPS),
    ("target_proximity", "health.nearest_target_similarity.ratio", 0.80, 0.80 - EPS),
    ("collapse", "health.mean_pairwise_cosine_translated", 0.90, 0.90 + EPS),
    ("retention_vs_status_quo", "quality.retention", 0.38, 0.38 - EPS),
    ("known_item_top1", "quality.known_item.top1", 0.50, 0.50 - EPS),
    ("top1", "quality.top1", 0.50, 0.50 - EPS),
    ("mean_cosine", "quality.mean_cosine", 0.50, 0.50 - EPS),
    ("count_equal", "integrity.counts_equal", True, False),
    ("missing_rows", "integrity.rows.missing", 0, 1),
    ("mismatched_rows", "integrity.rows.vector_mismatches", 0, 1),
    ("mismatched_rows", "integrity.rows.payload_mismatches", 0, 1),
    ("stored_non_finite", "integrity.rows.non_finite", 0, 1),
    ("ann_recall", "ann.recall", 0.90, 0.90 - EPS),
]


@pytest.mark.parametrize("check, field, at_bound, past", BOUNDS, ids=[f"{b[0]}:{b[1]}" for b in BOUNDS])
def test_each_check_fails_alone_just_past_its_bound(check, field, at_bound, past):
    assert _failed(_set(_passing(), field, at_bound)) == []
    report = _set(_passing(), field, past)
    assert _failed(report) == [check]
    reason = verdict(report, parse_thresholds(None))["reasons"][0]
    # two checks explain themselves in words; the others name the check, its value and its bound
    words = {"retention_vs_status_quo": "below what the old model keeps",
             "known_item_top1": "known-item search finds its own document first for only"}
    assert (words[check] in reason) if check in words else reason.startswith(f"{check} = "), reason


def test_status_quo_tolerance_is_two_standard_errors_unless_set():
    r = _set(_set(_passing(), "quality.retention", 0.33), "quality.retention_minus_status_quo_se", 0.035)
    assert _failed(r) == []                                   # 0.40 - 2 x 0.035 = 0.33: on the bound
    assert _failed(_set(r, "quality.retention_minus_status_quo_se", 0.0349)) == ["retention_vs_status_quo"]
    assert _failed(r, status_quo_tolerance=0.0) == ["retention_vs_status_quo"]  # fixed tolerance wins
    assert _failed(_set(_passing(), "quality.retention", 0.40), status_quo_tolerance=0.0) == []
    assert _failed(_set(_passing(), "quality.retention", 0.40), status_quo_tolerance=-0.05) == ["retention_vs_status_quo"]
    reason = verdict(_set(r, "quality.retention", 0.30), parse_thresholds(None))["reasons"][0]
    assert reason.startswith("retention 0.300 is below what the old model keeps, 0.400 (tolerance 0.070)")


def test_optional_floors_and_thresholds_move_the_bounds():
    # the absolute retention floor is off by default (0) and checked only when set
    assert "retention" not in [c["name"] for c in verdict(_passing(), parse_thresholds(None))["checks"]]
    assert _failed(_passing(), retention=0.45) == []
    assert _failed(_passing(), retention=0.45 + EPS) == ["retention"]
    # counts allowed by a threshold: the bound moves, the check still fails alone past it
    assert _failed(_set(_passing(), "integrity.rows.missing", 2), missing_rows=2) == []
    assert _failed(_set(_passing(), "integrity.rows.missing", 3), missing_rows=2) == ["missing_rows"]
    assert _failed(_set(_passing(), "ann.recall", 0.5), ann_recall=0.5) == []
    # one threshold (non_finite) bounds both the translated and the stored NaN/inf rows
    both = _set(_set(_passing(), "health.non_finite_rows", 1), "integrity.rows.non_finite", 1)
    assert _failed(both) == ["non_finite", "stored_non_finite"] and _failed(both, non_finite=1) == []


def test_no_pairs_fails_require_pairs_alone_unless_allowed():
    r = _set(_passing(), "quality", None)
    assert _failed(r) == ["require_pairs"]
    assert "--encoder SPEC" in verdict(r, parse_thresholds(None))["reasons"][0]
    assert _failed(r, require_pairs=0) == []


def test_checks_without_their_measurement_are_left_out_not_passed():
    # a dry run has no integrity, a Parquet destination no ANN index, no --target no proximity ratio
    r = _set(_set(_passing(), "integrity", None), "ann", {"measured": False, "reason": "parquet: no search engine"})
    r = _set(r, "health.nearest_target_similarity", None)
    v = verdict(r, parse_thresholds(None))
    names = {c["name"] for c in v["checks"]}
    assert not names & {"count_equal", "missing_rows", "mismatched_rows", "stored_non_finite", "ann_recall",
                        "target_proximity"}
    assert v["decision"] == "go" and "parquet: no search engine" in v["notes"]
    # an unmeasured status quo cannot pass the calibrated check
    assert _failed(_set(_passing(), "quality.status_quo", None)) == ["retention_vs_status_quo"]


def test_an_extra_destination_row_fails_count_equal_alone(tmp_path):
    """On a real destination: apply, then one row the source never had is added. Every sampled row is still
    present and equal, so count_equal, and only it, fails."""
    import shared_data

    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found (set V2V_SHARED_DATA)")
    import translators
    from connectors import Batch, open_store
    from v2v_migrate.apply import apply_migration
    from v2v_migrate.report import build_report

    x = shared_data.embeddings("minilm", np.arange(400))
    src, dest = f"faiss:{tmp_path / 'src.faiss'}", f"parquet:{tmp_path / 'dest'}"
    with open_store(src) as s:
        s.create(384, "cosine", id_type="int")
        s.upsert(Batch(list(range(400)), x, [{"row": i} for i in range(400)]))
        s.flush()
    tr = tmp_path / "identity"
    translators.fit(x, x, method="identity").save(tr)
    apply_migration(str(tr), src, dest, device="cpu", state_dir=str(tmp_path / "state"))
    kw = dict(translator_dir=str(tr), source_uri=src, dest_uri=dest, sample_size=400, json_only=True,
              thresholds={"require_pairs": 0})
    assert _names_failed(build_report(out_dir=tmp_path / "r1", **kw)) == []
    with open_store(dest) as d:
        d.upsert(Batch([10_000], x[:1], [{"row": 10_000}]))
        d.flush()
    r = build_report(out_dir=tmp_path / "r2", **kw)
    assert _names_failed(r) == ["count_equal"] and r["integrity"]["dest_count"] == 401
    assert r["verdict"]["reasons"] == ["count_equal = 0 (needs >= 1): destination count 401 vs source 400"]


def _names_failed(report: dict) -> list[str]:
    return [c["name"] for c in report["verdict"]["checks"] if not c["passed"]]
