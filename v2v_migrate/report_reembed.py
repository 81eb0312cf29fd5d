"""The report's re-embedding progress: which share of the destination holds the new model's own vectors
(rows `reembed` or `apply --encoder` wrote, marked per v2v_migrate.provenance) rather than translations.

Measured on the report's sample of source ids (exact when the sample covers the store), so the report costs
the same whatever the destination's size; `reembed --json` gives the exact counts of its passes.
"""
from __future__ import annotations

from collections import Counter

from v2v_migrate.provenance import embedded_by


def reembed_share(dest, ids) -> dict:
    """{'sampled', 'present', 'embedded', 'share' (embedded / present), 'models': {identity: rows}}."""
    got = dest.get(list(ids))
    models = Counter(m for m in map(embedded_by, got.payloads or []) if m)
    n = sum(models.values())
    return {"sampled": len(ids), "present": len(got.ids), "embedded": n,
            "share": round(n / len(got.ids), 4) if len(got.ids) else 0.0, "models": dict(models)}
