#!/usr/bin/env bash
# Prepare .gpu_shared/ (ignored by git) so benchmarks/fidelity.py can run on the device machine, which gets the
# working tree but not ../shared: the l3 and minilm rows l3 covers (< 30,000), the split and info.json, in the
# layout benchmarks/shared_data.py reads (~45 MB; the carried tree must stay under 64 MiB). The l3 <-> minilm
# protocol only ever reads rows < 30,000, so its figures there are those of the full data.
# Usage: bash benchmarks/gpu_fidelity.sh, then on the device machine (carry [".gpu_shared"]):
#   V2V_SHARED_DATA=$PWD/.gpu_shared OMP_NUM_THREADS=4 PYTHONPATH=. python3 benchmarks/fidelity.py \
#     --pairs l3:minilm,minilm:l3 --device cuda --workers 4 --json $OUT/fidelity.json
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu_shared/' .git/info/exclude 2>/dev/null || echo '/.gpu_shared/' >> .git/info/exclude
mkdir -p .gpu_shared/pypi
PY=${PY:-.venv/bin/python}
PYTHONPATH=.:benchmarks "$PY" - <<'PYEOF'
import json, shutil
from pathlib import Path
import numpy as np
import shared_data as sd

out = Path(".gpu_shared/pypi")
src = sd.corpus_dir()
covered = sd.info()["models"]["l3"]["rows"]
assert sd.split()["test"].max() < covered, "test rows beyond l3's coverage: the protocol changed"
for name in ("info.json", "split.npz"):
    shutil.copyfile(src / name, out / name)
for model in ("l3", "minilm"):
    np.save(out / f"{model}.f16.npy", np.asarray(np.load(src / f"{model}.f16.npy", mmap_mode="r")[:covered]))
print("prepared", sorted(p.name for p in out.iterdir()), "rows", covered)
PYEOF
du -sh .gpu_shared
