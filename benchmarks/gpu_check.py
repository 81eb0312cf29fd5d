"""One prepared GPU run: vec2vec at scale, refinement on GPU, translation throughput GPU vs CPU, agreement.

Data: `.gpu_data/` (made by benchmarks/gpu_check.sh from ../shared/data; ignored by git, carried to the device
machine): minilm half A, e5 half B (unpaired), the 8,192 held-out rows of both, and translator directories under
`bases/` (linear maps to refine). Protocol as the data README: source only half A, target only half B, paired
metrics on the held-out rows with pool 8,192.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out DIR            # on the GPU machine
    PYTHONPATH=. python3 benchmarks/gpu_check.py --tiny --out /tmp/x  # CPU smoke test, seconds
Prints one JSON document at the end (also written to DIR/gpu_check.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translators.metrics import paired_metrics  # noqa: E402


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def load(data: Path, tiny: bool) -> dict:
    d = {k: np.load(data / f"{k}.f16.npy").astype(np.float32)
         for k in ("minilm_A", "e5_B", "minilm_test", "e5_test")}
    if tiny:
        d = {k: v[:1200] for k, v in d.items()}
    return d


def short(m: dict) -> dict:
    return {k: round(float(m[k]), 4) for k in ("mean_cosine", "top1", "mean_rank")}


def sync(dev: str):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(translator, dev: str, n: int, reps: int = 3) -> dict:
    """vectors/s of Translator.__call__ (numpy in, numpy out, transfers included) and of the bare module."""
    x = np.random.default_rng(0).standard_normal((n, translator.source_dim)).astype(np.float32)
    translator.to(dev)
    translator(x[:4096])                                   # warm-up (allocations, kernels)
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        translator(x)
    sync(dev)
    out = {"numpy_vps": round(n * reps / (time.perf_counter() - t))}
    xt = torch.from_numpy(x).to(dev)
    with torch.inference_mode():
        for name, ctx in (("module_fp32_vps", None), ("module_bf16_vps", torch.bfloat16)):
            if ctx is not None and not dev.startswith("cuda"):
                continue
            def run():
                if ctx is None:
                    return translator.module(xt)
                with torch.autocast("cuda", dtype=ctx):
                    return translator.module(xt)
            run()
            sync(dev)
            t = time.perf_counter()
            for _ in range(reps):
                run()
            sync(dev)
            out[name] = round(n * reps / (time.perf_counter() - t))
    translator.to("cpu")
    return out


def agreement(translator, x: np.ndarray, dev: str) -> dict:
    cpu = translator.to("cpu")(x)
    if not dev.startswith("cuda"):
        return {"skipped": "no GPU"}
    gpu = translator.to(dev)(x)
    translator.to("cpu")
    cos = np.sum(cpu * gpu, 1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    return {"max_abs_diff": float(np.abs(cpu - gpu).max()), "min_cosine": float(cos.min()),
            "allclose_1e-4": bool(np.allclose(cpu, gpu, atol=1e-4))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".gpu_data")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: small data, seconds of training")
    ap.add_argument("--v2v-budget", type=float, default=180.0, help="vec2vec wall-clock budget, seconds")
    ap.add_argument("--refine-budget", type=float, default=35.0)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--width", type=int, default=1024, help="vec2vec d_adapter = d_hidden (paper: 1024)")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tiny = args.tiny
    rep: dict = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch": torch.__version__,
                 "cpu_threads": torch.get_num_threads(), "tiny": tiny}
    log("env", rep)
    d = load(Path(args.data), tiny)
    xt, yt = d["minilm_test"], d["e5_test"]
    pool = 8192

    def guarded(name, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a one-shot device run records the failure and goes on
            import traceback
            traceback.print_exc()
            rep[f"{name}_error"] = f"{type(e).__name__}: {e}"

    def section_vec2vec():
        _vec2vec(rep, d, dev, tiny, args, out_dir, xt, yt, pool)

    def section_refine():
        _refine(rep, d, dev, tiny, args, xt, yt, pool)

    def section_throughput():
        _throughput(rep, dev, tiny, args)

    guarded("vec2vec", section_vec2vec)
    guarded("refine", section_refine)
    guarded("throughput", section_throughput)
    text = json.dumps(rep, indent=1, default=str)
    (out_dir / "gpu_check.json").write_text(text)
    print(text)


def _vec2vec(rep, d, dev, tiny, args, out_dir, xt, yt, pool):
    from translators.vec2vec import fit_vec2vec

    # 1. vec2vec at scale (paper-size networks, large batch, bf16 autocast on GPU) within a fixed budget
    mon_rows = slice(0, 2048)
    monitor = lambda f: {"heldout_" + k: v for k, v in short(paired_metrics(f(xt[mon_rows]), yt[mon_rows], pool)).items()}  # noqa: E731
    width = 64 if tiny else args.width
    t0 = time.perf_counter()
    v2v = fit_vec2vec(d["minilm_A"], d["e5_B"], seed=0, device=dev, d_adapter=width, d_hidden=width,
                      adapter_depth=2 if tiny else 3, transform_depth=2 if tiny else 4,
                      batch_size=64 if tiny else args.batch_size, lr=1e-4, max_steps=10 if tiny else 100000,
                      time_budget_s=None if tiny else args.v2v_budget, eval_every=5 if tiny else 250,
                      eval_size=256 if tiny else 4096, patience=8, monitor=monitor,
                      log_every=0 if tiny else 500)
    v2v_s = time.perf_counter() - t0
    m = paired_metrics(v2v(xt), yt, pool)
    rep["vec2vec"] = {"seconds": round(v2v_s, 1), "heldout": short(m), "health": v2v.metrics["health"],
                      "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()
                                   if k in ("step", "seconds", "score", "csls_cos", "mutual_share", "cycle_cos",
                                            "heldout_mean_cosine", "heldout_top1", "heldout_mean_rank", "loss")}
                                  for h in v2v.metrics["history"]],
                      "config": {k: v2v.config[k] for k in ("d_adapter", "d_hidden", "adapter_depth",
                                                             "transform_depth")}}
    log("vec2vec", rep["vec2vec"]["seconds"], "s", rep["vec2vec"]["heldout"], v2v.metrics["health"])
    rep["agreement_vec2vec"] = agreement(v2v, xt[:4096], dev)
    log("agreement vec2vec", rep["agreement_vec2vec"])



def _refine(rep, d, dev, tiny, args, xt, yt, pool):
    from translators.io import load_translator
    from translators.refine import refine_translator

    # 2. refinement on GPU on top of each carried linear base
    rep["refine"] = {}
    bases = sorted(p for p in (Path(args.data) / "bases").glob("*") if (p / "config.json").exists())
    # loss-weight variants (translators/refine.py DEFAULT_WEIGHTS overridden): which terms measurably help
    variants = {"default": {}, "no_pseudo": {"pseudo": 0.0}, "gan_no_pseudo": {"gan": 1.0, "pseudo": 0.0}}
    for bdir in bases:
        base = load_translator(bdir)
        entry = rep["refine"][bdir.name] = {"base": short(paired_metrics(base(xt), yt, pool))}
        for vname, wts in variants.items():
            t0 = time.perf_counter()
            ref = refine_translator(base, d["minilm_A"], d["e5_B"], seed=0, device=dev, weights=wts,
                                    max_steps=6 if tiny else 5000, batch_size=256 if tiny else 1024,
                                    time_budget_s=None if tiny else args.refine_budget,
                                    eval_every=3 if tiny else 100, patience=10)
            entry[vname] = {"seconds": round(time.perf_counter() - t0, 1),
                            "refined": short(paired_metrics(ref(xt), yt, pool)), "health": ref.metrics["health"]}
            if vname == "default":
                entry[vname]["agreement"] = agreement(ref, xt[:4096], dev)
            log("refine", bdir.name, vname, entry[vname])



def _throughput(rep, dev, tiny, args):
    width = 64 if tiny else args.width
    # 3. throughput: GPU vs CPU, same run, 384->384 and 384->768, for both architectures
    from translators.model import Translator
    from translators.refine import ResidualRefinement
    from translators.vec2vec import Vec2VecModule
    rep["throughput"] = {}
    n_gpu, n_cpu = (8192, 2048) if tiny else (524288, 65536)
    for dt in (384, 768):
        cfg = {"arch": "vec2vec", "source_dim": 384, "target_dim": dt, "d_adapter": width, "d_hidden": width,
               "adapter_depth": 3, "transform_depth": 4, "output_norm": 1.0}
        v = Translator(cfg, Vec2VecModule(cfg))
        lin = {"arch": "linear", "source_dim": 384, "target_dim": dt, "normalize_input": True,
               "normalize_centered": True, "target_scale": 0.5, "output_norm": 1.0}
        rcfg = {"arch": "mlp_residual", "source_dim": 384, "target_dim": dt, "base": lin, "hidden": 512,
                "depth": 2, "output_norm": 1.0}
        r = Translator(rcfg, ResidualRefinement(rcfg))
        for name, tr in (("vec2vec", v), ("mlp_residual", r)):
            key = f"{name}_384to{dt}"
            res = {"cpu": throughput(tr, "cpu", n_cpu)}
            if dev == "cuda":
                res["gpu"] = throughput(tr, dev, n_gpu)
                res["gpu_over_cpu_numpy"] = round(res["gpu"]["numpy_vps"] / res["cpu"]["numpy_vps"], 1)
            rep["throughput"][key] = res
            log("throughput", key, res)


if __name__ == "__main__":
    main()
