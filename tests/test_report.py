"""The retrieval-quality report: dry run, after apply, verdict, HTML. Real stores, real embeddings."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import shared_data

if shared_data.data_root() is None:
    pytest.skip("shared reference data not found (set V2V_SHARED_DATA)", allow_module_level=True)

from connectors import Batch, open_store  # noqa: E402
from v2v_migrate import report_metrics as rm  # noqa: E402
from connectors.errors import DimensionMismatchError, StoreNotFoundError  # noqa: E402
from v2v_migrate.errors import UsageError  # noqa: E402
from v2v_migrate.report import build_report, parse_thresholds  # noqa: E402

N = 1200  # rows per store: big enough for recall@10 over ~1,000 candidates, small enough for CI
EVIL = "<script>alert(1)</script>"


def _write(uri, ids, vectors, payloads=None, metric="cosine"):
    store = open_store(uri)
    store.create(vectors.shape[1], metric, id_type="int", exist_ok=True)
    store.upsert(Batch(list(ids), np.ascontiguousarray(vectors, np.float32), payloads))
    store.flush()
    store.close()


def _save(translator, path) -> str:
    translator.save(path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Source: old-model (l3) vectors of rows 0..N-1 in FAISS (+ payloads); target: new-model (minilm) vectors
    of rows N/2..3N/2 in Parquet (ids shared with the source for half of them = pairs); a same-model copy of the
    source (minilm) for the identity checks; identity / random / fitted translators."""
    import translators

    root = tmp_path_factory.mktemp("report")
    rows = np.arange(N)
    old = shared_data.embeddings("l3", rows)
    new_all = shared_data.embeddings("minilm", np.arange(N + N // 2))
    texts = [t["text"] for t in shared_data.texts(rows)]
    # Every payload carries hostile markup: whatever rows the page shows, it must show them escaped.
    payloads = [{"text": f"{EVIL} {texts[i]}", "row": int(i)} for i in range(N)]
    stores = {
        "source": f"faiss:{root / 'source.faiss'}",
        "source_new": f"faiss:{root / 'source_new.faiss'}",
        "target": f"faiss:{root / 'target.faiss'}",
    }
    _write(stores["source"], rows.tolist(), old, payloads)
    _write(stores["source_new"], rows.tolist(), new_all[:N], payloads)
    tgt_ids = np.arange(N // 2, N + N // 2)
    _write(stores["target"], tgt_ids.tolist(), new_all[tgt_ids])
    # The "fitted" translator: least squares on pairs from rows NOT in the source (no leak into the measurement).
    from translators.model import linear_translator

    fx, fy = shared_data.embeddings("l3", np.arange(20000, 23000)), shared_data.embeddings("minilm", np.arange(20000, 23000))
    w = np.linalg.solve(fx.T @ fx + 1e-3 * np.eye(fx.shape[1], dtype=np.float32), fx.T @ fy)
    zeros = np.zeros(w.shape[0], np.float32)
    fitted = linear_translator(w, zeros, zeros, {"method": "lstsq-test", "output_norm": 1.0})
    x_new = new_all[:N]
    trs = {
        "identity": _save(translators.fit(x_new, x_new, method="identity"), root / "t_identity"),
        "random": _save(translators.fit(x_new, x_new, method="random", seed=3), root / "t_random"),
        "fitted": _save(fitted, root / "t_fitted"),
    }
    pairs_file = root / "pairs.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(600)), "source": [list(map(float, v)) for v in old[:600]],
                             "target": [list(map(float, v)) for v in new_all[:600]]}), pairs_file)
    return {"root": root, "stores": stores, "translators": trs, "pairs": str(pairs_file), "old": old,
            "new": new_all, "w": w}


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _brute_quality(x, y, pred) -> dict:
    """The report's quality figures recomputed by brute force (full similarity matrices, argsort), every row a
    query: an independent second implementation of the definitions in v2v_migrate/report_quality.py."""
    ux, uy, up = _unit(x), _unit(y), _unit(pred)
    n, eye = len(y), np.eye(len(y), dtype=bool)

    def top10(s):
        s = np.where(eye, -np.inf, s)
        return np.argsort(-s, axis=1)[:, :10]

    truth, found, old = top10(uy @ uy.T), top10(uy @ up.T), top10(ux @ ux.T)
    kept = [len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]
    sq = [len(set(t) & set(o)) / 10 for t, o in zip(truth, old)]
    return {"retention": float(np.mean(kept)), "status_quo": float(np.mean(sq)),
            "top1": float(np.mean(np.argmax(up @ uy.T, axis=1) == np.arange(n))),
            "known_item_top1": float(np.mean(np.argmax(uy @ up.T, axis=1) == np.arange(n))),
            "mean_cosine": float(np.mean(np.sum(up * uy, axis=1))), "cosines": np.sum(up * uy, axis=1)}


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if "reports" in p.parts:
                continue
            out[str(p)] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def test_dry_run_writes_nothing_and_measures_quality(data):
    s = data["stores"]
    before = _snapshot(data["root"])
    out = data["root"] / "reports" / "dry"
    r = build_report(translator_dir=data["translators"]["fitted"], source_uri=s["source"], target_uri=s["target"],
                     out_dir=out, sample_size=N)
    assert _snapshot(data["root"]) == before  # no store (nor anything else outside the report dir) changed
    assert (out / "report.json").exists() and (out / "report.html").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["kind"] == "dry-run" and saved["integrity"] is None
    q = saved["quality"]
    assert q["origin"] == "target-store" and q["pairs"] == N // 2  # ids present in both stores
    # a supervised linear l3 -> minilm map: clearly better than chance, far from perfect
    assert q["top1"] > 0.8 and 0.5 < q["mean_cosine"] < 0.95
    assert 0.2 < q["retention"] < 0.9
    # the figures against brute force on the same pairs (ids N/2..N-1, all 600 of them queries)
    ids = np.arange(N // 2, N)
    x, y = data["old"][ids], data["new"][ids]
    want = _brute_quality(x, y, x @ data["w"])
    assert q["queries"] == N // 2
    for key in ("retention", "status_quo", "top1", "mean_cosine"):
        assert q[key] == pytest.approx(want[key], abs=1e-5), key
    assert q["known_item"]["top1"] == pytest.approx(want["known_item_top1"], abs=1e-5)
    curve = q["recall_curve"]["recall"]
    assert len(curve) == 100 and curve[9] == pytest.approx(want["retention"], abs=1e-5)
    assert saved["health"]["non_finite_rows"] == 0
    assert set(saved["verdict"]) >= {"decision", "go", "reasons", "checks"}


def test_retention_is_one_for_identity_on_identical_data_and_low_for_random(data):
    s = data["stores"]
    common = dict(source_uri=s["source_new"], pairs_path=None, target_uri=s["target"], sample_size=N, json_only=True)
    ident = build_report(translator_dir=data["translators"]["identity"], out_dir=data["root"] / "reports" / "id", **common)
    rand = build_report(translator_dir=data["translators"]["random"], out_dir=data["root"] / "reports" / "rnd", **common)
    qi, qr = ident["quality"], rand["quality"]
    assert qi["retention"] == pytest.approx(1.0) and qi["top1"] == 1.0 and qi["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert qr["retention"] < 0.1 and qr["top1"] < 0.05
    assert ident["verdict"]["go"] is True
    assert rand["verdict"]["go"] is False
    failed = {c["name"] for c in rand["verdict"]["checks"] if not c["passed"]}
    assert {"retention_vs_status_quo", "known_item_top1", "top1", "mean_cosine", "target_proximity"} <= failed
    assert qr["retention"] < qr["status_quo"] and qi["retention"] > qi["status_quo"] - 1e-9
    assert "neighbour_overlap" not in failed  # a rotation keeps neighbourhoods: that check alone cannot tell
    assert not (data["root"] / "reports" / "id" / "report.html").exists()  # json_only


def test_pairs_file_and_its_errors(data):
    s = data["stores"]
    r = build_report(translator_dir=data["translators"]["fitted"], source_uri=s["source"], pairs_path=data["pairs"],
                     out_dir=data["root"] / "reports" / "pf", sample_size=300, json_only=True)
    assert r["pairs"]["origin"] == "parquet" and r["pairs"]["n"] == 600 and r["quality"]["top1"] > 0.8
    assert not r["pairs"]["excluded_training_rows"]  # a file train never saw: every row is held out
    assert EVIL in r["quality"]["examples"][0]["query"]  # the file's id column -> source payloads for the examples
    with pytest.raises(StoreNotFoundError, match="(?i)pairs file"):
        build_report(translator_dir=data["translators"]["fitted"], source_uri=s["source"],
                     pairs_path=str(data["root"] / "nope.parquet"), out_dir=data["root"] / "reports" / "x")
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = data["root"] / "bad_pairs.parquet"
    pq.write_table(pa.table({"source": [[0.1] * 5] * 3, "target": [[0.1] * 5] * 3}), bad)
    with pytest.raises(DimensionMismatchError) as e:
        build_report(translator_dir=data["translators"]["fitted"], source_uri=s["source"], pairs_path=str(bad),
                     out_dir=data["root"] / "reports" / "x")
    assert e.value.fix


def test_no_pairs_is_no_go_unless_allowed(data):
    s = data["stores"]
    kw = dict(translator_dir=data["translators"]["fitted"], source_uri=s["source"], sample_size=400, json_only=True,
              out_dir=data["root"] / "reports" / "np")
    r = build_report(**kw)
    assert r["quality"] is None and r["verdict"]["decision"] == "no-go"
    assert any("require_pairs" in x for x in r["verdict"]["reasons"])
    assert build_report(thresholds={"require_pairs": 0}, **kw)["verdict"]["decision"] == "go"


def test_thresholds_change_the_verdict(data):
    s = data["stores"]
    kw = dict(translator_dir=data["translators"]["fitted"], source_uri=s["source"], target_uri=s["target"],
              sample_size=N, json_only=True, out_dir=data["root"] / "reports" / "th")
    calibrated = build_report(**kw)  # default: retention against the status quo (what the old model keeps)
    q = calibrated["quality"]
    assert q["retention"] > q["status_quo"] and calibrated["verdict"]["decision"] == "go", calibrated["verdict"]
    absolute = build_report(thresholds=["retention=0.9"], **kw)  # CLI form key=value: an absolute floor
    assert absolute["verdict"]["decision"] == "no-go" and absolute["thresholds"]["retention"] == 0.9
    assert any(x.startswith("retention = ") for x in absolute["verdict"]["reasons"])
    margin = build_report(thresholds={"status_quo_tolerance": -0.5}, **kw)  # demand 0.5 more than the old model
    assert margin["verdict"]["decision"] == "no-go"
    assert any("is below what the old model keeps" in x for x in margin["verdict"]["reasons"])
    with pytest.raises(UsageError, match="Unknown threshold"):
        parse_thresholds({"retension": 0.5})
    with pytest.raises(UsageError):
        parse_thresholds(["retention"])
    with pytest.raises(UsageError):
        parse_thresholds({"retention": "high"})


def test_html_is_self_contained_and_escapes_payloads(data):
    s = data["stores"]
    out = data["root"] / "reports" / "html"
    r = build_report(translator_dir=data["translators"]["fitted"], source_uri=s["source"], target_uri=s["target"],
                     out_dir=out, sample_size=N)
    page = (out / "report.html").read_text()
    assert EVIL in json.dumps(r["sample_rows"]) and EVIL in json.dumps(r["quality"]["examples"])  # data has it...
    assert EVIL not in page and "<script" not in page.lower()  # ...the page never as markup
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    assert "<link" not in page and "src=" not in page and "@import" not in page  # nothing fetched
    # translation vs status quo vs re-embed, cosine histogram, rank CDF, recall@k curve, neighbourhood overlap:
    # each plot parsed and its marks checked against figures recomputed by brute force
    ids = np.arange(N // 2, N)
    want = _brute_quality(data["old"][ids], data["new"][ids], data["old"][ids] @ data["w"])
    _check_plots(page, want, r["health"]["neighbour_overlap"]["hist"])


SVG = "{http://www.w3.org/2000/svg}"


def _check_plots(page: str, want: dict, overlap_hist: dict) -> None:
    import re
    import xml.etree.ElementTree as ET

    from v2v_migrate.report_html import H, PAD_B, PAD_T

    svgs = {}
    chunks = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    for chunk in chunks:
        el = ET.fromstring(chunk)  # well-formed XML, or this raises
        svgs[el.find(SVG + "title").text] = el
    # five quality plots, and the strategy comparison's two (retention by strategy, by re-embedded share)
    assert len(chunks) == len(svgs) == 7, sorted(svgs)
    ph = H - PAD_T - PAD_B

    # retention vs status quo vs re-embed: bar lengths in proportion, labels with the brute-force figures
    bars = svgs["Share of the true top-10 kept (recall@10)"]
    widths = {r.find(SVG + "title").text.split(":")[0]: float(r.get("width")) for r in bars.iter(SVG + "rect")}
    assert set(widths) == {"translation", "status quo", "re-embed"}
    assert widths["translation"] / widths["re-embed"] == pytest.approx(want["retention"], abs=0.003)
    assert widths["status quo"] / widths["re-embed"] == pytest.approx(want["status_quo"], abs=0.003)
    labels = [t.text for t in bars.iter(SVG + "text")]
    assert f"{want['retention']:.3f}" in labels and f"{want['status_quo']:.3f}" in labels and "1.000" in labels

    # cosine histogram: one bar per bin, its count (tooltip) the brute-force count, heights in proportion
    counts, _ = np.histogram(np.clip(want["cosines"], -0.2, 1.0), bins=48, range=(-0.2, 1.0))
    rects = list(svgs["cos(translated, true new-model vector)"].iter(SVG + "rect"))
    shown = [int(r.find(SVG + "title").text.rsplit(": ", 1)[1]) for r in rects]
    assert shown == counts.tolist() and sum(shown) == N // 2
    tallest = max(float(r.get("height")) for r in rects)
    for r, c in zip(rects, counts):
        assert float(r.get("height")) == pytest.approx(tallest * c / counts.max(), abs=0.1)

    def curve(title):
        line = next(svgs[title].iter(SVG + "polyline"))
        return [tuple(map(float, p.split(","))) for p in line.get("points").split()]

    def share(py):  # a point's y pixel back to the plotted value on the 0..1 axis
        return 1 - (py - PAD_T) / ph

    recall = curve("recall@k of new-model queries")
    assert len(recall) == 100 and share(recall[9][1]) == pytest.approx(want["retention"], abs=0.002)
    assert all(a[0] < b[0] for a, b in zip(recall, recall[1:]))  # k increases left to right
    cdf = curve(f"Rank of the true vector among {N // 2} candidates (CDF)")
    assert len(cdf) == 100 and share(cdf[0][1]) == pytest.approx(want["top1"], abs=0.002)
    assert all(share(a[1]) <= share(b[1]) + 1e-9 for a, b in zip(cdf, cdf[1:]))  # a CDF never falls

    overlap = svgs["Top-10 neighbourhood overlap, source vs translated"]
    shown = [int(r.find(SVG + "title").text.rsplit(": ", 1)[1]) for r in overlap.iter(SVG + "rect")]
    assert shown == overlap_hist["counts"] and sum(shown) > 0


def _apply(translator_dir, source_uri, dest_uri, state_dir):
    from v2v_migrate.apply import apply_migration

    return apply_migration(translator_dir, source_uri, dest_uri, device="cpu", state_dir=state_dir)


def test_after_apply_integrity_and_tampered_row(data, tmp_path):
    s = data["stores"]
    dest_uri = f"faiss:{tmp_path / 'dest.faiss'}"
    _apply(data["translators"]["fitted"], s["source"], dest_uri, str(tmp_path / "state"))
    kw = dict(translator_dir=data["translators"]["fitted"], source_uri=s["source"], dest_uri=dest_uri,
              target_uri=s["target"], sample_size=N, thresholds={"retention": 0.2}, json_only=True)
    clean = build_report(out_dir=tmp_path / "r1", **kw)
    integ = clean["integrity"]
    assert clean["kind"] == "after-apply" and integ["counts_equal"] and integ["dest_count"] == N
    assert integ["rows"]["present"] == N and integ["rows"]["vector_mismatches"] == 0
    assert integ["rows"]["payload_mismatches"] == 0 and integ["rows"]["payloads_compared"]
    assert clean["verdict"]["go"], clean["verdict"]["reasons"]

    dest = open_store(dest_uri)
    row = dest.get([7])
    tampered = row.vectors.copy()
    tampered[0, :5] += 0.3
    dest.upsert(Batch([7], tampered, row.payloads))
    dest.flush()
    dest.close()
    bad = build_report(out_dir=tmp_path / "r2", **kw)
    rows = bad["integrity"]["rows"]
    assert rows["vector_mismatches"] == 1 and [b["id"] for b in rows["bad_rows"]] == [7]
    assert bad["verdict"]["decision"] == "no-go"
    assert any(x.startswith("mismatched_rows") for x in bad["verdict"]["reasons"])


def test_recall_curve_matches_brute_force():
    rng = np.random.default_rng(0)
    y = rm.unit(rng.standard_normal((200, 16)).astype(np.float32))
    pred = rm.unit(y + 0.6 * rng.standard_normal(y.shape).astype(np.float32))
    q = np.arange(0, 200, 3)
    curve = rm.recall_curve(y[q], q, y, pred, "cosine", max_k=20)
    for k in (1, 5, 10, 20):
        hits = 0
        for j in q:
            st, sp = y @ y[j], pred @ y[j]
            st[j] = sp[j] = -np.inf
            hits += len(set(np.argsort(-st)[:k]) & set(np.argsort(-sp)[:k]))
        assert curve[k - 1] == pytest.approx(hits / (len(q) * k))
    assert np.allclose(rm.recall_curve(y[q], q, y, y, "cosine", max_k=20), 1.0)


def test_after_apply_page_escapes_hostile_string_ids_and_payloads(data, tmp_path):
    """The after-apply page: string ids and payloads carrying markup reach every table it adds (bad rows with
    their source payloads, missing ids, sampled rows) escaped, never as markup."""
    import html as html_lib

    n = 300
    ids = [f'<img src=x onerror="alert({i})">&id-{i}' for i in range(n)]
    payloads = [{"text": f"{EVIL} row {i}", "note": f"</td><script>steal({i})</script>"} for i in range(n)]
    src, dest = f"faiss:{tmp_path / 'src.faiss'}", f"parquet:{tmp_path / 'dest'}"
    with open_store(src) as s:
        s.create(384, "cosine", id_type="str")
        s.upsert(Batch(ids, data["old"][:n], payloads))
        s.flush()
    _apply(data["translators"]["fitted"], src, dest, str(tmp_path / "state"))
    with open_store(dest) as d:  # one row tampered (vector and payload), one deleted
        row = d.get([ids[7]])
        d.upsert(Batch([ids[7]], row.vectors * np.float32(-1.0), [{"text": "changed <b>"}]))
        d.delete([ids[11]])
        d.flush()
    out = tmp_path / "report"
    r = build_report(translator_dir=data["translators"]["fitted"], source_uri=src, dest_uri=dest, out_dir=out,
                     sample_size=n, thresholds={"require_pairs": 0})
    rows = r["integrity"]["rows"]
    assert [b["id"] for b in rows["bad_rows"]] == [ids[7]] and rows["missing_ids"] == [ids[11]]
    assert r["verdict"]["decision"] == "no-go"
    page = (out / "report.html").read_text()
    body = page.split("<h2>Destination integrity</h2>", 1)[1]
    bad_table = body.split("<h2>", 1)[0]
    assert f"<td class=mono>{html_lib.escape(ids[7])}</td>" in bad_table  # the bad row's id...
    assert html_lib.escape(json.dumps(payloads[7], ensure_ascii=False)) in bad_table  # ...with its source payload
    assert f"<code>{html_lib.escape(ids[11])}</code>" in bad_table  # the missing id
    sampled = body.split("<h2>Sampled source rows</h2>", 1)[1]
    assert r["sample_rows"] and all(f"<td class=mono>{html_lib.escape(x['id'])}</td>" in sampled for x in r["sample_rows"])
    for raw in ("<img", "<script", "onerror=\"", "</td><script>", EVIL):
        assert raw not in page, raw
