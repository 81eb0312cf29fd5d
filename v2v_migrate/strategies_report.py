"""The report's strategy comparison: the query bridge checked and measured, costs timed here, and the
section's text and HTML (table and plots). The figures themselves come from v2v_migrate.strategies."""
from __future__ import annotations

import tempfile
import time

import numpy as np

from v2v_migrate import strategies as st
from v2v_migrate.errors import UsageError

RATE_ROWS = 4096  # rows each rate is timed on


def check_bridge(bridge, translator) -> None:
    """A bridge maps the new model's space back to the old one: refuse anything else with the fix."""
    wf = (getattr(bridge, "config", None) or {}).get("workflow") or {}
    if wf.get("direction") != "new-to-old":
        raise UsageError("--bridge names a translator that is not a query bridge (its config.json does not record "
                         "direction new-to-old).", "train one with `v2v-migrate train --direction new-to-old`.")
    if (bridge.source_dim, bridge.target_dim) != (translator.target_dim, translator.source_dim):
        raise UsageError(f"the bridge maps {bridge.source_dim}-d -> {bridge.target_dim}-d but this migration goes "
                         f"{translator.source_dim}-d -> {translator.target_dim}-d.",
                         "train the bridge on the same stores and encoder as the translator.")
    rule = ((getattr(translator, "config", None) or {}).get("workflow") or {}).get("holdout")
    if rule and wf.get("holdout") and wf["holdout"] != rule:
        raise UsageError("the bridge and the translator hold out different rows, so one would be measured on rows "
                         "it was trained on.", "retrain the bridge with this version of v2v-migrate.")


def refuse_bridge_as_translator(translator, command: str) -> None:
    """apply/report with a bridge where the old->new translator belongs would write nonsense when dims agree."""
    wf = (getattr(translator, "config", None) or {}).get("workflow") or {}
    if wf.get("direction") == "new-to-old":
        raise UsageError(f"{command} was given a query bridge (new-to-old) as its translator.",
                         "pass the old-to-new translator here (a bridge goes to `report --bridge`).")


def _rate(fn, rows: int) -> float | None:
    t0 = time.perf_counter()
    fn()
    return rows / max(time.perf_counter() - t0, 1e-9) if rows else None


def read_rate(source, rows: int = RATE_ROWS) -> float | None:
    t0, got = time.perf_counter(), 0
    for b in source.iter_batches(1024):
        got += len(b)
        if got >= rows:
            break
    return got / max(time.perf_counter() - t0, 1e-9) if got else None


def write_rate(vectors: np.ndarray) -> float | None:
    """Rows/s of upsert + flush into a scratch Parquet dataset in a temporary folder (deleted after): a
    local write rate, not a server's."""
    from connectors import Batch, open_store

    v = np.ascontiguousarray(vectors[:RATE_ROWS], dtype=np.float32)
    if not len(v):
        return None
    with tempfile.TemporaryDirectory(prefix="v2v-rate-") as d:
        rate = None
        for name, rows in (("warm", v[:64]), ("w", v)):  # the first write pays for imports: not timed
            with open_store(f"parquet:{d}/{name}") as s:
                s.create(v.shape[1], "cosine", id_type="int")
                rate = _rate(lambda: (s.upsert(Batch(list(range(len(rows))), rows, None)), s.flush()), len(rows))
        return rate


def text_share(payloads, text_field: str | None) -> float:
    """Share of sampled rows with text to re-embed (0 when no field holds text)."""
    from v2v_migrate.encoders import EncoderError, detect_text_field, texts_of

    if not payloads:
        return 0.0
    try:
        field = detect_text_field(payloads, text_field)
    except EncoderError:
        return 0.0
    return float(np.mean([t is not None for t in texts_of(payloads, field)]))


def section(translator, bridge, pairs, sample, source, quality: dict, *, metric: str, seed: int,
            encode_rate: float | None, text_field: str | None = None, max_queries: int = 1000) -> dict:
    """report.json's `strategies`: figures on the held-out pairs, the progressive curve, rates, costs, choice.

    The status quo and migrate figures are the quality section's (same pairs, queries and truth); only the
    bridge and the mixed indexes are measured here."""
    x, y = pairs.x, pairs.y
    n = len(x)
    qrows = np.sort(np.random.default_rng(seed).choice(n, min(n, max_queries), replace=False))  # as quality's
    forward = translator(x)
    ki = quality["known_item"]
    figures = {
        "status_quo": {"retention": quality["status_quo"], "retention_se": None, "known_item_top1": 1.0,
                       "known_item_mean_rank": 1.0, "measured": True, "note": st.SAME_VECTOR},
        "bridge": st.bridge_row(x, y, bridge(y) if bridge is not None else None, qrows, metric, source.metric),
        "migrate": {"retention": quality["retention"], "retention_se": None, "known_item_top1": ki["top1"],
                    "known_item_mean_rank": ki["mean_rank"], "measured": True, "note": None},
        "reembed": dict(st.REEMBED_ROW)}
    progressive = st.mixed_retention(y, forward, qrows, metric, shares=(0.0, 0.25, 0.5, 0.75, 1.0), seed=seed)
    rates = {"read": read_rate(source),
             "translate": _rate(lambda: translator(sample.vectors[:RATE_ROWS]), min(len(sample), RATE_ROWS)),
             "bridge": (_rate(lambda: bridge(y[:RATE_ROWS]), min(n, RATE_ROWS)) if bridge is not None else None),
             "encode": encode_rate, "write": write_rate(forward)}
    share = text_share(sample.payloads, text_field)
    costs = st.project_costs(int(source.count()), rates, share)
    if share == 0:
        costs["reembed"].update(seconds=None, note="no row has text to embed")
    return {"pairs": n, "queries": int(len(qrows)), "figures": figures, "progressive": progressive,
            "rates": rates, "source_rows": int(source.count()), "text_share": share, "costs": costs,
            "recommendation": st.recommend(figures, costs),
            "rule": (f"re-embed if projected <= {st.REEMBED_BUDGET_S / 60:.0f} min; else status quo if neither "
                     f"bridge nor migrate reaches its retention; else the bridge if within {st.TOLERANCE} of "
                     "migrate (zero writes); else migrate")}


def _dur(s) -> str:
    if s is None:
        return "unknown"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def lines(sec: dict) -> list[str]:
    """Plain text: one line per strategy, then the recommendation."""
    out = [f"{'strategy':<13}{'retention':>10}{'known-item':>11}{'writes':>12}  time at {sec['source_rows']:,} rows"]
    for s in st.STRATEGIES:
        f, c = sec["figures"][s], sec["costs"][s]
        ret = "—" if f["retention"] is None else f"{f['retention']:.3f}"
        ki = "—" if f["known_item_top1"] is None else f"{f['known_item_top1']:.3f}"
        out.append(f"{st.LABELS[s]:<13}{ret:>10}{ki:>11}{c['writes']:>12,}  {_dur(c['seconds'])}")
    rec = sec["recommendation"]
    out.append(f"strategy: {st.LABELS[rec['strategy']]} - {'; '.join(rec['reasons'])}")
    return out


def html(sec: dict) -> str:
    from v2v_migrate.report_html import esc, fmt, svg_compare, svg_lines

    rows = []
    for s in st.STRATEGIES:
        f, c = sec["figures"][s], sec["costs"][s]
        rows.append(f"<tr><th>{esc(st.LABELS[s])}</th><td class=num>{esc(fmt(f['retention']))}</td>"
                    f"<td class=num>{esc(fmt(f['known_item_top1']))}</td><td class=num>{esc(fmt(c['writes']))}</td>"
                    f"<td class=num>{esc(_dur(c['seconds']))}</td><td class=num>{esc(fmt(c.get('query_ms')))}</td>"
                    f"<td>{esc(f.get('note') or c.get('note') or '')}</td></tr>")
    r = sec["rates"]
    rates = ", ".join(f"{k} {v:,.0f}/s" if v else f"{k} unknown" for k, v in r.items())
    colours = {"status_quo": "#e08a1e", "bridge": "#1a7f37", "migrate": "#3b6fd4", "reembed": "#98a2b3"}
    bars = svg_compare([(st.LABELS[s], sec["figures"][s]["retention"], colours[s]) for s in st.STRATEGIES],
                       "Retention by strategy (recall@10)", "new model's exact top-10 = 1.0")
    p = sec["progressive"]
    curve = svg_lines([("translated + re-embedded", [100 * m["share"] for m in p], [m["retention"] for m in p],
                        "#3b6fd4")], "Retention as re-embedding progresses", "% of rows re-embedded", "retention")
    rec = sec["recommendation"]
    return ("<h2>Strategies</h2>"
            f"<p><b>Recommended: {esc(st.LABELS[rec['strategy']])}</b> — {esc('; '.join(rec['reasons']))}.</p>"
            "<table><tr><th>strategy</th><th>retention (recall@10)</th><th>known-item top-1</th><th>writes</th>"
            f"<th>time at {esc(fmt(sec['source_rows']))} rows</th><th>added ms per query (in batches)</th><th>note</th></tr>"
            + "".join(rows) + "</table>"
            f"<p class=muted>{esc(sec['pairs'])} held-out pairs, {esc(sec['queries'])} queries. Rates measured here: "
            f"{esc(rates)} (write: scratch Parquet). {esc(round(100 * sec['text_share']))} % of rows have text. "
            f"Rule: {esc(sec['rule'])}.</p>"
            f'<div class="grid"><div class="card">{bars}</div><div class="card">{curve}</div></div>')


def figures_from_report(path) -> dict:
    """The measured strategy figures of an earlier report.json (for plan --report)."""
    import json
    from pathlib import Path

    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    try:
        figures = (json.loads(p.read_text(encoding="utf-8")).get("strategies") or {}).get("figures")
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read report {p} ({type(e).__name__}).",
                         "pass the report.json written by `v2v-migrate report`.") from None
    if not isinstance(figures, dict):
        raise UsageError(f"report {p} holds no strategy comparison (it was made without held-out pairs).",
                         "run `v2v-migrate report` with --encoder or --pairs (and --bridge), then pass its report.json.")
    return figures


def plan_section(n_rows: int, rates: dict, share: float, report_path=None) -> dict:
    """plan.toml's [strategy]: costs projected from the rates plan timed, the choice, and its reasons (TOML
    holds no None: unknown values are left out)."""
    from pathlib import Path

    figures = figures_from_report(report_path) if report_path else {}
    costs = st.project_costs(n_rows, rates, share)
    if share == 0:
        costs["reembed"].update(seconds=None, note="no row has text to embed")
    out = {"rates": rates, "text_share": share, "costs": costs, "recommendation": st.recommend(figures, costs),
           "figures_from": str(Path(report_path).resolve()) if report_path else "not measured yet (plan --report REPORT.json)",
           "retention": {s: (figures.get(s) or {}).get("retention") for s in st.STRATEGIES}}
    return _no_none(out)


def _no_none(obj):
    if isinstance(obj, dict):
        return {k: _no_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_no_none(v) for v in obj if v is not None]
    return obj
