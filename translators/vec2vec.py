"""vec2vec: unsupervised translation between embedding spaces (Jha et al., arXiv 2505.12540).

Architecture (paper section 4, reference code rjha18/vec2vec): input adapters A1 (source) and A2 (target) map
into a shared latent, a shared residual-MLP backbone T refines it, output adapters B1/B2 map back out. The
translation source -> target is F1 = B2(T(A1(x))); the reverse F2 = B1(T(A2(y))). Training sees NO pairs:
a batch of source vectors and an unrelated batch of target vectors, and the losses (translators/losses.py):
  adversarial (least-squares GAN) on both output spaces and on the latent, reconstruction B_i(T(A_i(x))) = x,
  cycle consistency F2(F1(x)) = x and F1(F2(y)) = y, vector-space preservation of pairwise cosines.

Working space: each side is L2-normalised, centred by its mean and L2-normalised again (the adapters see unit
vectors, as in the reference). The module carries those means plus the target's typical centred norm as buffers,
so its output lives in the RAW target space next to true target vectors, and `load_translator` rebuilds it from
config.json + model.safetensors alone.

Model selection / early stopping is UNSUPERVISED: every `eval_every` steps the translations of a held-out source
sample are matched to a held-out target sample with CSLS, and the mean cosine to those neighbours (MUSE's
criterion) is the score; training stops after `patience` evaluations without a `min_delta` gain and the best
weights are restored. (The reference code's early stopper never fires: it looks up a metric name the eval loop
does not produce.)
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from translators.arrays import unit_t
from translators.losses import AdversarialLoss, CycleLoss, ReconstructionLoss, VSPLoss, csls_criterion
from translators.model import Translator, register_arch, resolve_device
from translators.errors import TrainingError

DEFAULT_WEIGHTS = {  # the paper's unsupervised config: cycle and VSP heavy, GAN terms at 1
    "rec": 1.0, "cycle": 10.0, "vsp": 10.0, "gan_src": 1.0, "gan_tgt": 1.0, "gan_latent": 1.0,
}



def _match_width(skip: torch.Tensor, width: int) -> torch.Tensor:
    """Residual across a width change: zero-pad or truncate the skip path (as the reference's MLPs do)."""
    d = skip.shape[-1]
    return F.pad(skip, (0, width - d)) if d < width else skip[..., :width]


class ResidualMLP(nn.Module):
    """`depth` blocks Linear+SiLU(+LayerNorm), each with a skip connection; the last block projects to out_dim."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, dropout: float = 0.0):
        super().__init__()
        blocks = []
        for i in range(depth):
            d_in = in_dim if i == 0 else hidden
            if depth == 1:
                blocks.append(nn.Sequential(nn.Linear(d_in, out_dim)))
            elif i == 0:
                blocks.append(nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU()))
            elif i < depth - 1:
                blocks.append(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.LayerNorm(hidden),
                                            nn.Dropout(dropout)))
            else:
                blocks.append(nn.Sequential(nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.SiLU(),
                                            nn.Linear(hidden, out_dim)))
        self.blocks = nn.ModuleList(blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            y = block(x)
            x = y + _match_width(x, y.shape[-1])
        return x


@register_arch("vec2vec")
class Vec2VecModule(nn.Module):
    """Adapters + shared backbone; forward(raw source) -> raw target space (the F1 direction)."""

    def __init__(self, config: dict):
        super().__init__()
        ds, dt = int(config["source_dim"]), int(config["target_dim"])
        lat, hid = int(config["d_adapter"]), int(config["d_hidden"])
        ad, td, p = int(config["adapter_depth"]), int(config["transform_depth"]), float(config.get("dropout", 0.0))
        self.output_norm = config.get("output_norm")
        self.A1, self.A2 = ResidualMLP(ds, hid, lat, ad, p), ResidualMLP(dt, hid, lat, ad, p)
        self.T = ResidualMLP(lat, hid, lat, td, p)
        self.B1, self.B2 = ResidualMLP(lat, hid, ds, ad, p), ResidualMLP(lat, hid, dt, ad, p)
        self.register_buffer("source_mean", torch.zeros(ds))
        self.register_buffer("target_mean", torch.zeros(dt))
        self.register_buffer("target_scale", torch.ones(()))

    # working space <-> raw space
    def pre_source(self, x: torch.Tensor) -> torch.Tensor:
        return unit_t(unit_t(x) - self.source_mean)

    def post_target(self, u: torch.Tensor) -> torch.Tensor:
        y = unit_t(u) * self.target_scale + self.target_mean
        return y if self.output_norm is None else unit_t(y) * float(self.output_norm)

    # compiled callables for training (a plain dict, so state_dict keys stay unchanged); empty = eager
    _runners: dict = {}

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self._runners.get(name, getattr(self, name))(x)

    # the four paths of the paper (working space in, unit working space out)
    def latent(self, x: torch.Tensor, side: str) -> torch.Tensor:
        return self._run("T", self._run("A1" if side == "src" else "A2", x))

    def decode(self, z: torch.Tensor, side: str) -> torch.Tensor:
        return unit_t(self._run("B1" if side == "src" else "B2", z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_target(self.decode(self.latent(self.pre_source(x), "src"), "tgt"))


def _side_stats(v: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(mean of unit rows, mean norm of centred unit rows, typical raw norm) of one side."""
    norms = np.linalg.norm(v, axis=1)
    u = v / np.maximum(norms[:, None], 1e-12)
    mean = u.mean(0)
    return mean, float(np.linalg.norm(u - mean, axis=1).mean()), float(np.median(norms))


def _as_work(v: np.ndarray, mean: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    return unit_t(unit_t(t) - torch.from_numpy(mean.astype(np.float32)))


def _holdout(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return perm[size:], perm[:size]


def _numpy_fn(model: nn.Module, dev: str):
    """np (n, d_s) -> np (n, d_t) through the module in eval mode, in chunks (for monitors)."""
    def f(x: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(torch.from_numpy(np.ascontiguousarray(x[i:i + 8192], np.float32)).to(dev))
                              .float().cpu() for i in range(0, len(x), 8192)]).numpy()
    return f


def fit_vec2vec(source, target, pairs=None, seed: int = 0, device: str = "auto", progress: bool = False, *,
                d_adapter: int = 512, d_hidden: int = 512, adapter_depth: int = 3, transform_depth: int = 4,
                dropout: float = 0.0, batch_size: int | None = None, lr: float = 1e-4, disc_lr: float | None = None,
                gan_style: str = "least_squares", weights: dict | None = None, max_steps: int = 20000,
                time_budget_s: float | None = 600.0, eval_every: int = 200, eval_size: int = 2048,
                patience: int = 5, min_delta: float = 1e-4, min_steps: int = 0, bf16: bool | None = None,
                compile: bool = False, log_every: int = 0, monitor=None, **unused) -> Translator:
    """Train vec2vec on UNPAIRED source and target samples; returns a Translator (arch 'vec2vec').

    `pairs` is accepted for the common fit() signature and ignored (vec2vec is unsupervised). `time_budget_s`
    bounds wall time; early stopping (see module doc) usually ends sooner. Deterministic for a seed on CPU.
    `monitor`, if given, is called at each evaluation with a function raw source (np) -> raw target (np) and
    its dict is merged into that history entry (benchmarks use it to log paired held-out metrics; it never
    influences training or model selection).
    """
    del pairs, unused
    source = np.asarray(source, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if source.ndim != 2 or target.ndim != 2:
        raise TrainingError("vec2vec needs 2-D arrays of vectors.", "pass one vector per row.")
    need = max(64, 2 * min(eval_size, 256))
    if len(source) < need or len(target) < need:
        raise TrainingError(f"vec2vec needs at least {need} vectors on each side, got {len(source)} and "
                            f"{len(target)}.", "sample more vectors (thousands work better), or use method "
                            "'auto' (linear) for small stores.")
    if not (np.isfinite(source).all() and np.isfinite(target).all()):
        raise TrainingError("training vectors contain NaN or inf.", "drop or repair those vectors first.")
    dev = resolve_device(device)
    use_bf16 = (dev.startswith("cuda")) if bf16 is None else bool(bf16 and dev.startswith("cuda"))
    batch_size = int(batch_size or (2048 if dev.startswith("cuda") else 256))
    w = dict(DEFAULT_WEIGHTS, **(weights or {}))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    s_mean, _, _ = _side_stats(source)
    t_mean, t_scale, t_norm = _side_stats(target)
    config = {
        "arch": "vec2vec", "method": "vec2vec", "source_dim": source.shape[1], "target_dim": target.shape[1],
        "d_adapter": d_adapter, "d_hidden": d_hidden, "adapter_depth": adapter_depth,
        "transform_depth": transform_depth, "dropout": dropout,
        # unit-length target models get unit outputs; others are rescaled to the target's median norm
        "output_norm": 1.0 if abs(t_norm - 1.0) < 1e-2 else t_norm,
        "training": {"source_samples": len(source), "target_samples": len(target), "seed": seed,
                     "batch_size": batch_size, "lr": lr, "weights": w, "gan_style": gan_style},
    }
    model = Vec2VecModule(config)
    with torch.no_grad():
        model.source_mean.copy_(torch.from_numpy(s_mean))
        model.target_mean.copy_(torch.from_numpy(t_mean))
        model.target_scale.fill_(t_scale)
    model.to(dev)

    xs, xt = _as_work(source, s_mean).to(dev), _as_work(target, t_mean).to(dev)
    eval_size = min(eval_size, len(xs) // 5, len(xt) // 5)
    s_train, s_val = _holdout(len(xs), eval_size, gen)
    t_train, t_val = _holdout(len(xt), eval_size, gen)
    xs_val, xt_val = xs[s_val.to(dev)], xt[t_val.to(dev)]

    lat = int(d_adapter)
    gans = {"gan_tgt": AdversarialLoss(target.shape[1], lr=disc_lr or lr / 2, style=gan_style, name="gan_tgt"),
            "gan_src": AdversarialLoss(source.shape[1], lr=disc_lr or lr / 2, style=gan_style, name="gan_src"),
            "gan_latent": AdversarialLoss(lat, lr=disc_lr or lr / 2, style=gan_style, name="gan_latent")}
    for g in gans.values():
        g.to(dev)
    rec, cyc, vsp = ReconstructionLoss(), CycleLoss(), VSPLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    if compile:  # optional: pays off only for long GPU runs (compilation itself takes tens of seconds)
        model._runners = {n: torch.compile(getattr(model, n)) for n in ("A1", "A2", "T", "B1", "B2")}

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else torch.autocast("cpu", enabled=False)

    @torch.no_grad()
    def evaluate() -> dict:
        model.eval()
        with autocast():
            ab = model.decode(model.latent(xs_val, "src"), "tgt").float()
            aba = model.decode(model.latent(ab, "tgt"), "src").float()
        model.train()
        out = csls_criterion(ab, xt_val)
        out["cycle_cos"] = float(F.cosine_similarity(aba, xs_val, dim=1).mean())
        return out

    history, best, best_state, bad_evals = [], -float("inf"), None, 0
    stopped_early, t0, step = False, time.perf_counter(), 0
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_steps, desc="vec2vec", unit="step")
    for step in range(1, max_steps + 1):
        xa = xs[s_train[torch.randint(len(s_train), (batch_size,), generator=gen)].to(dev)]
        xb = xt[t_train[torch.randint(len(t_train), (batch_size,), generator=gen)].to(dev)]
        with autocast():
            la, lb = model.latent(xa, "src"), model.latent(xb, "tgt")
            ab, ba = model.decode(la, "tgt"), model.decode(lb, "src")
            parts = {}
            # critics first (on detached fakes), then the generator's adversarial terms
            parts.update(gans["gan_tgt"].discriminator_step(xb, ab))
            parts.update(gans["gan_src"].discriminator_step(xa, ba))
            parts.update(gans["gan_latent"].discriminator_step(lb, la))
            parts.update(gans["gan_tgt"](ab))
            parts.update(gans["gan_src"](ba))
            parts.update(gans["gan_latent"](la))
            ra = rec(xa, model.decode(la, "src"))["rec"]
            rb = rec(xb, model.decode(lb, "tgt"))["rec"]
            parts["rec"] = (ra + rb) / 2
            # cycle on detached translations, as the reference does: the second pass learns to invert the first
            aba = model.decode(model.latent(ab.detach(), "tgt"), "src")
            bab = model.decode(model.latent(ba.detach(), "src"), "tgt")
            parts["cycle"] = (cyc(xa, aba)["cycle"] + cyc(xb, bab)["cycle"]) / 2
            parts["vsp"] = (vsp(xa, ab)["vsp"] + vsp(xb, ba)["vsp"]) / 2
            loss = sum(w[k] * parts[k].float() for k in w if k in parts)
        if not torch.isfinite(loss):
            raise TrainingError(f"vec2vec diverged at step {step} (loss is {float(loss)}).",
                                "lower lr (e.g. --lr 3e-5) or use method 'auto'.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if bar is not None:
            bar.update(1)
        if log_every and step % log_every == 0:
            print(f"step {step} " + " ".join(f"{k}={float(v.detach()):.4f}" for k, v in parts.items()), flush=True)
        out_of_time = time_budget_s is not None and time.perf_counter() - t0 > time_budget_s
        if step % eval_every == 0 or step == max_steps or out_of_time:
            ev = evaluate()
            ev.update(step=step, seconds=round(time.perf_counter() - t0, 2),
                      loss=float(loss.detach()), **{k: round(float(v.detach()), 5) for k, v in parts.items()})
            if monitor is not None:
                ev.update(monitor(_numpy_fn(model, dev)))
                model.train()
            history.append(ev)
            if ev["score"] > best + min_delta:
                best, bad_evals = ev["score"], 0
                best_state = copy.deepcopy(model.state_dict())
                ev["best"] = True
            else:
                bad_evals += 1
            if bad_evals >= patience and step >= min_steps:
                stopped_early = True
                break
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model._runners = {}
    final = evaluate()
    best_step = max((h for h in history if h.get("best")), key=lambda h: h["step"], default={"step": step})["step"]
    health = {"criterion": "csls_cos x mutual_share", "score": final["score"], "csls_cos": final["csls_cos"], "mutual_share": final["mutual_share"],
              "cycle_cos": final["cycle_cos"], "steps": step, "best_step": best_step,
              "stopped_early": stopped_early, "seconds": round(time.perf_counter() - t0, 2),
              "device": dev, "bf16": use_bf16}
    model.eval().to("cpu")
    config["training"].update(steps=step, best_step=best_step, stopped_early=stopped_early)
    return Translator(config, model, {"health": health, "history": history})
