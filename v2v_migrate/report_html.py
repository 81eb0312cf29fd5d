"""report.json -> one self-contained report.html: inline CSS, hand-written inline SVG plots, no script,
no external resource. Every value that reaches the page goes through `esc` (payloads are user data)."""
from __future__ import annotations

import html
import json

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 420, 250, 46, 36, 38, 12

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1d2433;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.muted{color:#667085}.badge{display:inline-block;padding:6px 16px;border-radius:6px;font-weight:700;font-size:20px;color:#fff}
.go{background:#1a7f37}.nogo{background:#c62828}table{border-collapse:collapse;margin:6px 0;width:100%}
td,th{border:1px solid #dde2ea;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f6f9}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:12px}
.card{border:1px solid #dde2ea;border-radius:6px;padding:8px}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
ul{margin:4px 0 4px 18px;padding:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# ---- SVG ----------------------------------------------------------------------------------------------------
def _frame(title, xlabel, ylabel, x0, x1, y0, y1, body) -> str:
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    ticks = []
    for i in range(5):
        fy = i / 4
        y = PAD_T + ph * (1 - fy)
        ticks.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eef0f4"/>'
                     f'<text x="{PAD_L - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{esc(_tick(y0 + fy * (y1 - y0)))}</text>')
        x = PAD_L + pw * fy
        ticks.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{esc(_tick(x0 + fy * (x1 - x0)))}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
            f'<title>{esc(title)}</title><text x="{W / 2}" y="16" font-size="13" font-weight="600" text-anchor="middle">{esc(title)}</text>'
            + "".join(ticks) + body +
            f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#445"/>'
            f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#445"/>'
            f'<text x="{PAD_L + pw / 2}" y="{H - 6}" font-size="11" text-anchor="middle">{esc(xlabel)}</text>'
            f'<text x="12" y="{PAD_T + ph / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {PAD_T + ph / 2})">{esc(ylabel)}</text></svg>')


def _tick(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def svg_bars(edges, counts, title, xlabel, ylabel="rows") -> str:
    if not counts:
        return ""
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    x0, x1, top = edges[0], edges[-1], max(max(counts), 1)
    bars = []
    for i, c in enumerate(counts):
        xa = PAD_L + pw * (edges[i] - x0) / (x1 - x0)
        xb = PAD_L + pw * (edges[i + 1] - x0) / (x1 - x0)
        h = ph * c / top
        bars.append(f'<rect x="{xa + 0.5:.1f}" y="{PAD_T + ph - h:.1f}" width="{max(xb - xa - 1, 0.5):.1f}" height="{h:.1f}" fill="#3b6fd4">'
                    f'<title>{esc(f"{edges[i]:.3f}–{edges[i + 1]:.3f}: {c}")}</title></rect>')
    return _frame(title, xlabel, ylabel, x0, x1, 0, top, "".join(bars))


def svg_compare(rows, title, xlabel) -> str:
    """Horizontal bars on a 0..1 scale: rows of (label, value, colour); the verdict's three figures."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return ""
    left = PAD_L + 90  # room for the labels; 36 px on the right for the value after a full bar
    pw, ph = W - left - PAD_R - 36, H - PAD_T - PAD_B
    step = ph / len(rows)
    body = []
    for i, (label, value, colour) in enumerate(rows):
        y, w = PAD_T + step * i + step * 0.2, pw * min(max(float(value), 0.0), 1.0)
        body.append(f'<text x="{left - 6}" y="{y + step * 0.35:.1f}" font-size="11" text-anchor="end">{esc(label)}</text>'
                    f'<rect x="{left}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{step * 0.6:.1f}" fill="{colour}">'
                    f'<title>{esc(f"{label}: {float(value):.3f}")}</title></rect>'
                    f'<text x="{left + w + 4:.1f}" y="{y + step * 0.35:.1f}" font-size="11">{esc(f"{float(value):.3f}")}</text>')
    ticks = "".join(f'<text x="{left + pw * f:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{f:g}</text>'
                    f'<line x1="{left + pw * f:.1f}" y1="{PAD_T}" x2="{left + pw * f:.1f}" y2="{H - PAD_B}" stroke="#eef0f4"/>'
                    for f in (0, 0.25, 0.5, 0.75, 1.0))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
            f'<title>{esc(title)}</title><text x="{W / 2}" y="16" font-size="13" font-weight="600" text-anchor="middle">'
            f'{esc(title)}</text>{ticks}{"".join(body)}'
            f'<line x1="{left}" y1="{H - PAD_B}" x2="{left + pw}" y2="{H - PAD_B}" stroke="#445"/>'
            f'<text x="{left + pw / 2}" y="{H - 6}" font-size="11" text-anchor="middle">{esc(xlabel)}</text></svg>')


def svg_lines(series, title, xlabel, ylabel, y_max=1.0) -> str:
    """series: list of (label, xs, ys, colour)."""
    series = [s for s in series if s[1]]
    if not series:
        return ""
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    x0 = min(min(s[1]) for s in series)
    x1 = max(max(s[1]) for s in series)
    x1 = x1 if x1 > x0 else x0 + 1
    body = []
    for n, (label, xs, ys, colour) in enumerate(series):
        pts = " ".join(f"{PAD_L + pw * (x - x0) / (x1 - x0):.1f},{PAD_T + ph * (1 - min(max(y, 0), y_max) / y_max):.1f}"
                       for x, y in zip(xs, ys))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        # legend in the band between the title and the plot, so it never hides a curve
        body.append(f'<text x="{PAD_L + 4 + 170 * n}" y="{PAD_T - 6}" font-size="11" fill="{colour}">&#9644; {esc(label)}</text>')
    return _frame(title, xlabel, ylabel, x0, x1, 0, y_max, "".join(body))


# ---- page ----------------------------------------------------------------------------------------------------
def _kv_table(rows) -> str:
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows) + "</table>"


def _checks_table(checks) -> str:
    head = "<tr><th>check</th><th>value</th><th>rule</th><th>result</th><th>what it measures</th></tr>"
    rows = "".join(
        f"<tr><td class=mono>{esc(c['name'])}</td><td class=num>{esc(fmt(c['value']))}</td>"
        f"<td class=mono>{esc(c['op'])} {esc(fmt(c['threshold']))}</td>"
        f"<td class={'pass' if c['passed'] else 'fail'}>{'pass' if c['passed'] else 'FAIL'}</td><td>{esc(c['what'])}</td></tr>"
        for c in checks)
    return f"<table>{head}{rows}</table>"


def _plots(r) -> str:
    q, h = r.get("quality"), r["health"]
    cards = []
    if q:
        cards.append(svg_compare([("translation", q["retention"], "#3b6fd4"),
                                  ("status quo", q.get("status_quo"), "#e08a1e"),
                                  ("re-embed", q.get("reembed", 1.0), "#98a2b3")],
                                 "Share of the true top-10 kept (recall@10)", "new model's exact top-10 = 1.0"))
        ch = q["cosine_hist"]
        cards.append(svg_bars(ch["edges"], ch["counts"], "cos(translated, true new-model vector)", "cosine", "pairs"))
        rc = q["rank_cdf"]
        cards.append(svg_lines([("translated", rc["rank"], rc["share"], "#3b6fd4")],
                               f"Rank of the true vector among {q['pool']} candidates (CDF)", "rank", "share of pairs"))
        cv = q["recall_curve"]
        cards.append(svg_lines([("translated docs", cv["k"], cv["recall"], "#3b6fd4"),
                                ("true docs (exact)", cv["k"], [1.0] * len(cv["k"]), "#98a2b3")],
                               "recall@k of new-model queries", "k", "recall@k"))
    oh = h["neighbour_overlap"]["hist"]
    cards.append(svg_bars(oh["edges"], oh["counts"], "Top-10 neighbourhood overlap, source vs translated",
                          "overlap (share of the 10 neighbours kept)", "sampled rows"))
    return '<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in cards if c) + "</div>"


def _payload(p) -> str:
    return esc(json.dumps(p, ensure_ascii=False, default=str)) if p is not None else "—"


def render_html(r: dict, extra: str = "") -> str:
    v = r["verdict"]
    q, h, integ, ann = r.get("quality"), r["health"], r.get("integrity"), r.get("ann")
    t = r["translator"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>v2v-migrate report — {esc(v['decision'])}</title>",
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
             f"<style>{CSS}</style></head><body>",
             f"<h1>v2v-migrate retrieval report <span class=muted>({esc(r['kind'])})</span></h1>",
             f"<p class=muted>{esc(r['created'])} · translator {esc(t.get('method'))} "
             f"<code>{esc((t.get('fingerprint') or '')[:16])}</code> · {esc(t['source_dim'])} → {esc(t['target_dim'])} dims</p>",
             f"<p><span class=\"badge {'go' if v['go'] else 'nogo'}\">{esc(v['decision'].upper())}</span></p>",
             "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in v["reasons"] + v.get("notes", [])) + "</ul>",
             "<h2>Checks</h2>", _checks_table(v["checks"]),
             "<h2>Stores</h2>",
             _kv_table([("source", r["source"]["uri"]), ("source rows", r["source"]["count"]),
                        ("source metric", r["source"]["metric"]),
                        ("target (new-model store)", (r.get("target") or {}).get("uri")),
                        ("destination", (r.get("dest") or {}).get("uri")),
                        ("destination rows", (r.get("dest") or {}).get("count")),
                        ("search metric for quality figures", r["metric"]),
                        ("pairs", f"{r['pairs']['n']} ({r['pairs']['origin'] or 'none'})")])]
    parts.append("<h2>Retrieval quality</h2>")
    if q:
        ki = q.get("known_item") or {}
        parts.append("<table><tr><th></th><th>translation (migrate with this translator)</th><th>status quo (keep the "
                     "old model)</th><th>re-embed everything</th></tr><tr><th>share of the new model's true top-10 "
                     f"found (recall@10)</th><td class=num>{esc(fmt(q['retention']))}</td><td class=num>"
                     f"{esc(fmt(q.get('status_quo')))}</td><td class=num>{esc(fmt(q.get('reembed', 1.0)))}</td></tr></table>")
        parts.append(_kv_table([
            ("retrieval retention (recall@10 translated ÷ true)", q["retention"]),
            ("status quo: old-model queries on old-model vectors, same truth", q.get("status_quo")),
            ("standard error of (retention - status quo) over the queries", q.get("retention_minus_status_quo_se")),
            (f"known-item search: top-1 among {ki.get('pool')} translated documents", ki.get("top1")),
            ("known-item search: mean rank of its own document", ki.get("mean_rank")),
            ("mean cosine to the true new-model vector", q["mean_cosine"]),
            (f"top-1 among {q['pool']} candidates", q["top1"]), ("mean rank", q["mean_rank"]),
            ("held-out pairs / queries", f"{q['pairs']} / {q['queries']} ({q['origin']})"),
            ("neighbour overlap translated vs true vectors", q["neighbour_overlap_translated_vs_true"]),
            ("neighbour overlap source vs true, every pair a query (the status quo, measured on all)",
             q["neighbour_overlap_source_vs_true"])]))
    else:
        parts.append("<p><b>Not measured: only health checks ran</b>, so the verdict is no-go for lack of evidence. "
                     "Pass <code>--encoder SPEC</code> (the new model embeds held-out source texts), "
                     "<code>--pairs FILE</code> (Parquet, columns source/target), or a <code>--target</code> store "
                     "that shares ids with the source.</p>")
    parts.append(_plots(r))
    parts.append(extra)  # sections other modules render (the strategy comparison)
    if q and q.get("examples"):
        parts.append("<h2>Example queries</h2><table><tr><th>query (new-model vector of)</th>"
                     "<th>top-3 among true new-model vectors</th><th>top-3 among translated vectors</th></tr>")
        for e in q["examples"]:
            parts.append(f"<tr><td>{esc(e['query'])}</td><td><ol>{''.join(f'<li>{esc(x)}</li>' for x in e['true_top3'])}</ol></td>"
                         f"<td><ol>{''.join(f'<li>{esc(x)}</li>' for x in e['translated_top3'])}</ol></td></tr>")
        parts.append("</table>")
    parts.append("<h2>Health (no pairs needed)</h2>")
    near = h.get("nearest_target_similarity") or {}
    parts.append(_kv_table([
        ("sample size", h["sample_size"]), ("NaN/inf translated rows", h["non_finite_rows"]),
        ("source norm mean ± std", _norms(h["source_norms"])), ("translated norm mean ± std", _norms(h["translated_norms"])),
        ("target norm mean ± std", _norms(h.get("target_norms"))),
        ("mean top-10 neighbourhood overlap, source vs translated", h["neighbour_overlap"]["mean"]),
        ("mean pairwise cosine, translated", h["mean_pairwise_cosine_translated"]),
        ("mean pairwise cosine, target sample", h.get("mean_pairwise_cosine_target")),
        ("nearest real new-model vector: similarity of translations", near.get("translated")),
        ("nearest real new-model vector: similarity of real vectors", near.get("real")),
        ("target proximity (ratio of the two)", near.get("ratio")),
        ("translator training health", json.dumps(h.get("translator_health"), default=str) if h.get("translator_health") else None)]))
    if integ:
        rows = integ["rows"]
        parts.append("<h2>Destination integrity</h2>")
        parts.append(_kv_table([("source rows", integ["source_count"]), ("destination rows", integ["dest_count"]),
                                ("counts equal", integ["counts_equal"]), ("sampled ids", rows["sampled"]),
                                ("missing in destination", rows["missing"]), ("vector mismatches", rows["vector_mismatches"]),
                                ("payload mismatches", rows["payload_mismatches"]), ("NaN/inf stored rows", rows["non_finite"]),
                                ("max relative vector difference", rows.get("max_vector_error")),
                                ("tolerance", rows["tolerance"])]))
        if rows.get("bad_rows"):
            parts.append("<table><tr><th>id</th><th>vector difference</th><th>payload differs</th><th>source payload</th></tr>"
                         + "".join(f"<tr><td class=mono>{esc(b['id'])}</td><td class=num>{esc(fmt(b['vector_error']))}</td>"
                                   f"<td>{esc(fmt(b['payload_differs']))}</td><td class=mono>{_payload(b['source_payload'])}</td></tr>"
                                   for b in rows["bad_rows"]) + "</table>")
        if rows.get("missing_ids"):
            parts.append(f"<p>Missing ids (first {len(rows['missing_ids'])}): <code>{esc(', '.join(map(str, rows['missing_ids'])))}</code></p>")
        schema = integ.get("schema") or {}
        if schema.get("compared"):
            parts.append("<h3>Schema</h3><p>" + esc("; ".join(schema["differences"]) or
                         "the destination holds everything its engine can keep of the source's schema") + "</p>")
            if schema["not_carried"] or schema["not_holdable"]:
                parts.append("<p>Not kept by this engine: " + esc("; ".join(
                    schema["not_carried"] + [f"vector {n!r}" for n in schema["not_holdable"]])) + "</p>")
    if ann:
        parts.append("<h2>Destination ANN index</h2>")
        parts.append(_kv_table([("recall@10 vs exact search", ann.get("recall")), ("queries", ann.get("queries")),
                                ("queries from", ann.get("queries_from")), ("note", ann.get("reason"))]))
    parts.append("<h2>Sampled source rows</h2><table><tr><th>id</th><th>payload</th></tr>"
                 + "".join(f"<tr><td class=mono>{esc(s['id'])}</td><td class=mono>{_payload(s['payload'])}</td></tr>"
                           for s in r.get("sample_rows", [])) + "</table>")
    parts.append(DEFINITIONS + "</body></html>")
    return "\n".join(parts)


def _norms(s) -> str | None:
    if not s or not s.get("n"):
        return None
    return f"{s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})"


DEFINITIONS = """<h2>How to read this</h2><ul>
<li><b>Retrieval retention</b>: queries are true new-model vectors of up to 1,000 pair items; each searches the other
pair items (itself excluded). Ground truth is its exact top-10 among the true new-model vectors; retention is the share of
that top-10 found among the translated vectors (exact search on both sides, so the denominator is 1.0). It falls as the
number of pairs grows. End-to-end recall after apply is about retention × the destination's ANN recall.</li>
<li><b>Status quo</b>: the same share for the old model searching its own vectors (old-model query, old-model
documents) against the same new-model truth: what not migrating keeps. A translation cannot know more than its source,
so the verdict asks retention to reach the status quo (minus a tolerance: two standard errors of the per-query
difference, unless set with --threshold status_quo_tolerance=X), not 1.0. Re-embedding every document keeps 1.0.</li>
<li><b>Known-item search</b>: each held-out text's new-model vector searches the translated documents; top-1 is the
share that find their own document first.</li>
<li><b>top-1 / mean rank</b>: rank of each pair's own new-model vector among the candidate pool when searched with its
translation (random guessing gives a mean rank of about pool/2).</li>
<li><b>Neighbourhood overlap</b> (no pairs needed): share of each row's 10 nearest sampled neighbours that stay its
neighbours after translation. Two different models never agree fully; compare with the "source vs true" figure when
pairs exist. A high value alone does not prove the translation is aligned with the new model.</li>
<li><b>Target proximity</b> (needs a --target store): the similarity of each translation to its nearest real
new-model vector, divided by the same figure for real new-model vectors (half of the target sample against the other
half). A map that is not aligned with the new model (e.g. a random rotation) lands in empty regions: ratio well below 1.</li>
<li><b>Integrity</b>: sampled source ids are fetched from the destination; their vectors must equal the translator's
output within the tolerance (direction only for cosine stores) and their payloads must equal the source's.</li></ul>
"""
