#!/usr/bin/env bash
# Prepare .gpu_data/ (ignored by git) for benchmarks/gpu_check.py: the device machine gets the working tree but
# not ../shared, so the slices it needs travel as a carried folder (~38 MB, under the 64 MiB limit).
# Usage: bash benchmarks/gpu_check.sh   (then run gpu_check.py there with carry [".gpu_data"])
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
PYTHONPATH=.:benchmarks "$PY" - <<'PYEOF'
from pathlib import Path
import numpy as np
import shared_data as sd
from translators import fit

out = Path(".gpu_data"); (out / "bases").mkdir(parents=True, exist_ok=True)
sp = sd.split()
# 16,384 rows per half (not all 25,904): the carried tree must stay under 64 MiB with the other helpers' files
A, B, test = sp["A"][:16384], sp["B"][:16384], sp["test"]
arrays = {"minilm_A": ("minilm", A), "e5_B": ("e5", B), "minilm_test": ("minilm", test), "e5_test": ("e5", test)}
for name, (model, rows) in arrays.items():
    np.save(out / f"{name}.f16.npy", sd.embeddings(model, rows).astype(np.float16))
X, Y = sd.embeddings("minilm", A), sd.embeddings("e5", B)
# the supervised reference: Procrustes on every A u B pair (what refinement has to beat)
R = np.concatenate([sp["A"], sp["B"]])
fit(X, Y, method="procrustes", pairs=(sd.embeddings("minilm", R), sd.embeddings("e5", R))).save(out / "bases" / "procrustes_all_pairs")
try:  # the default unsupervised linear map, when translators.unsupervised exists
    fit(X, Y, method="auto", seed=0, device="cpu").save(out / "bases" / "auto")
except Exception as e:  # noqa: BLE001 - report and go on with the supervised base only
    print("no 'auto' base:", type(e).__name__, e)
print("prepared", sorted(p.name for p in out.rglob("*")))
PYEOF
du -sh .gpu_data
