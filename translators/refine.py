"""Non-linear refinement of a fitted (linear) translator, trained on UNPAIRED data.

The refined map is  F(x) = post(base(x) + s * g((base(x) - mu_t) / s))  where `base` is the given translator's
module (frozen), mu_t / s the target sample's mean and typical centred norm, and g a residual MLP whose last
layer starts at zero, so that at step 0 F == base exactly. Working coordinates for the losses are
(y - mu_t) / s for target-space vectors and (x - mu_s) / s_s for source vectors.

Unsupervised terms (translators/losses.py), weighted by `weights` (0 disables a term):
  mm      moment matching: mean, covariance and spread of F(x) match the target sample's
  gan     least-squares GAN between F(x) and target vectors (working coordinates)
  vsp     pairwise cosines of the source batch are kept in its translation
  cycle   a reverse map G (least-squares inverse of base fitted on the source sample + its own zero-init MLP):
          G(F(x)) = x and F(G(y)) = y
  pseudo  confident mutual CSLS nearest neighbours between F(x) and a target pool pulled together
  prox    ||g||^2: stay near the linear map unless the other terms pay for moving
The best step by the unsupervised criterion (CSLS mean cosine of held-out translations to held-out targets, see
losses.csls_criterion) is kept; step 0 is a candidate, so refinement never returns a map its own criterion
rates below the base.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from translators.arrays import unit_t
from translators.losses import (AdversarialLoss, CycleLoss, MomentMatchingLoss, PseudoPairLoss, VSPLoss,
                                csls_criterion)
from translators.model import ARCHES, Translator, register_arch, resolve_device
from translators.errors import TrainingError

DEFAULT_WEIGHTS = {"mm_mean": 1.0, "mm_cov": 1.0, "mm_norm": 1.0, "gan": 0.0, "vsp": 1.0, "cycle": 1.0,
                   "pseudo": 1.0, "prox": 1.0}



class _ZeroInitMLP(nn.Module):
    """d -> hidden -> ... -> d with SiLU + LayerNorm; the output layer is zero so the module starts as 0."""

    def __init__(self, d_in: int, d_out: int, hidden: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(max(depth - 1, 1)):
            layers += [nn.Linear(d, hidden), nn.SiLU(), nn.LayerNorm(hidden)]
            d = hidden
        self.out = nn.Linear(d, d_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


@register_arch("mlp_residual")
class ResidualRefinement(nn.Module):
    """base translator module + zero-initialised residual MLP in the target's working coordinates."""

    def __init__(self, config: dict):
        super().__init__()
        base_cfg = dict(config["base"])
        if base_cfg.get("arch") not in ARCHES:
            from translators.io import register_optional_arches
            register_optional_arches()
        self.base = ARCHES[base_cfg["arch"]](base_cfg)
        dt = int(config["target_dim"])
        self.residual = _ZeroInitMLP(dt, dt, int(config["hidden"]), int(config["depth"]))
        self.output_norm = config.get("output_norm")
        self.register_buffer("target_mean", torch.zeros(dt))
        self.register_buffer("target_scale", torch.ones(()))

    def refine(self, y0: torch.Tensor) -> torch.Tensor:
        """base output -> refined output (raw target space); the training loop calls this on cached y0."""
        y = y0 + self.target_scale * self.residual((y0 - self.target_mean) / self.target_scale)
        return y if self.output_norm is None else unit_t(y) * float(self.output_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.base(x))


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def refine_translator(translator: Translator, source, target, seed: int = 0, device: str = "auto", *,
                      hidden: int | None = None, depth: int = 2, weights: dict | None = None, lr: float = 1e-4,
                      batch_size: int | None = None, max_steps: int = 5000, time_budget_s: float | None = 100.0,
                      eval_every: int | None = None, eval_size: int | None = None, patience: int = 10,
                      min_delta: float = 1e-4, pseudo_pool: int | None = None, progress: bool = False,
                      log_every: int = 0, **unused) -> Translator:
    """Return a Translator (arch 'mlp_residual') refining `translator` on unpaired source/target samples.

    Sizes left at None follow the device: small on CPU (the ~2-minute budget on 2 cores), larger on GPU.
    """
    del unused, progress
    source = np.asarray(source, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if source.ndim != 2 or source.shape[1] != translator.source_dim:
        raise TrainingError(f"refinement source vectors have shape {source.shape}, the translator expects "
                            f"(n, {translator.source_dim}).", "pass vectors of the translator's source model.")
    if target.ndim != 2 or target.shape[1] != translator.target_dim:
        raise TrainingError(f"refinement target vectors have shape {target.shape}, the translator expects "
                            f"(n, {translator.target_dim}).", "pass vectors of the translator's target model.")
    if min(len(source), len(target)) < 256:
        raise TrainingError(f"refinement needs at least 256 vectors on each side, got {len(source)} and "
                            f"{len(target)}.", "sample more vectors, or skip refinement (method 'auto' does).")
    dev = resolve_device(device)
    gpu = dev.startswith("cuda")
    hidden = hidden or (512 if gpu else 256)
    batch_size = batch_size or (1024 if gpu else 256)
    pseudo_pool = pseudo_pool or (2048 if gpu else 1024)
    eval_size = eval_size or (4096 if gpu else 2048)
    eval_every = eval_every or (100 if gpu else 50)
    w = dict(DEFAULT_WEIGHTS, **(weights or {}))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    base_cfg = {k: v for k, v in translator.config.items() if k != "library_versions"}
    t_norms = np.linalg.norm(target, axis=1)
    config = {"arch": "mlp_residual", "method": f"{translator.method}+refine",
              "source_dim": translator.source_dim, "target_dim": translator.target_dim, "base": base_cfg,
              "hidden": hidden, "depth": depth,
              "output_norm": 1.0 if abs(float(np.median(t_norms)) - 1.0) < 1e-2 else float(np.median(t_norms)),
              "refine": {"seed": seed, "weights": w, "lr": lr, "batch_size": batch_size,
                         "source_samples": len(source), "target_samples": len(target)}}
    model = ResidualRefinement(config)
    model.base.load_state_dict(translator.module.state_dict())
    t_mean = target.mean(0)
    t_scale = float(np.linalg.norm(target - t_mean, axis=1).mean())
    with torch.no_grad():
        model.target_mean.copy_(_tensor(t_mean))
        model.target_scale.fill_(t_scale)
    model.to(dev)
    model.base.requires_grad_(False)

    # cached inputs: the base never changes, so its outputs are computed once
    with torch.no_grad():
        xs_raw = _tensor(source).to(dev)
        y0 = torch.cat([model.base(xs_raw[i:i + 8192]) for i in range(0, len(xs_raw), 8192)])
    s_mean = xs_raw.mean(0)
    s_scale = (xs_raw - s_mean).norm(dim=1).mean()
    xs_w = (xs_raw - s_mean) / s_scale                                  # source working coordinates
    yt_w = (_tensor(target).to(dev) - model.target_mean) / model.target_scale
    work = lambda y: (y - model.target_mean) / model.target_scale      # noqa: E731  (raw target -> working)

    eval_size = min(eval_size, len(source) // 4, len(target) // 4)
    s_perm, t_perm = torch.randperm(len(source), generator=gen), torch.randperm(len(target), generator=gen)
    s_val, s_train = s_perm[:eval_size].to(dev), s_perm[eval_size:]
    t_val, t_train = t_perm[:eval_size].to(dev), t_perm[eval_size:]

    cov_t = torch.cov(yt_w[t_train.to(dev)].T)
    mm = MomentMatchingLoss(yt_w[t_train.to(dev)].mean(0), cov_t).to(dev)
    vsp, cyc, pseudo = VSPLoss(), CycleLoss(), PseudoPairLoss(min_cos=0.0)
    gan = AdversarialLoss(translator.target_dim, lr=lr / 2, name="gan").to(dev) if w.get("gan") else None

    # reverse map for the cycle term: least-squares inverse of the base on the source sample (no pairs needed)
    z0 = work(y0)
    lhs = torch.cat([z0, torch.ones(len(z0), 1, device=dev)], 1)
    inv = torch.linalg.lstsq(lhs.cpu(), xs_w.cpu()).solution.to(dev)
    reverse = _ZeroInitMLP(translator.target_dim, translator.source_dim, hidden, depth).to(dev)

    def G(zt: torch.Tensor) -> torch.Tensor:  # target working coordinates -> source working coordinates
        return zt @ inv[:-1] + inv[-1] + reverse(zt)

    params = list(model.residual.parameters()) + list(reverse.parameters())
    opt = torch.optim.Adam(params, lr=lr)

    @torch.no_grad()
    def evaluate() -> dict:
        return csls_criterion(work(model.refine(y0[s_val])), yt_w[t_val])

    t0 = time.perf_counter()
    first = evaluate()
    history = [dict(first, step=0, seconds=0.0)]
    best, best_state, bad, stopped_early, step = first["score"], copy.deepcopy(model.state_dict()), 0, False, 0
    best_step = 0
    for step in range(1, max_steps + 1):
        ia = s_train[torch.randint(len(s_train), (batch_size,), generator=gen)].to(dev)
        ib = t_train[torch.randint(len(t_train), (batch_size,), generator=gen)].to(dev)
        fx = work(model.refine(y0[ia]))                 # translations, working coordinates
        yb = yt_w[ib]
        parts = dict(mm(fx))
        if gan is not None:
            parts.update(gan.discriminator_step(yb, fx))
            parts.update(gan(fx))
        parts.update(vsp(xs_w[ia], fx))
        if w.get("cycle"):
            back = G(fx)
            there = work(model.refine(model.base(G(yb) * s_scale + s_mean)))
            parts["cycle"] = (cyc(xs_w[ia], back)["cycle"] + cyc(yb, there)["cycle"]) / 2
        if w.get("pseudo"):
            pool = yt_w[t_train[torch.randint(len(t_train), (pseudo_pool,), generator=gen)].to(dev)]
            parts.update(pseudo(fx, pool))
        parts["prox"] = ((fx - z0[ia]) ** 2).sum(1).mean()
        loss = sum(w[k] * parts[k] for k in w if k in parts and w[k])
        if not torch.isfinite(loss):
            raise TrainingError(f"refinement diverged at step {step}.", "lower lr or skip refinement.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and step % log_every == 0:
            print(f"refine {step} " + " ".join(f"{k}={float(v.detach()):.4f}" for k, v in parts.items()), flush=True)
        out_of_time = time_budget_s is not None and time.perf_counter() - t0 > time_budget_s
        if step % eval_every == 0 or out_of_time or step == max_steps:
            ev = evaluate()
            history.append(dict(ev, step=step, seconds=round(time.perf_counter() - t0, 2),
                                **{k: round(float(v.detach()), 5) for k, v in parts.items()}))
            if ev["score"] > best + min_delta:
                best, best_state, bad, best_step = ev["score"], copy.deepcopy(model.state_dict()), 0, step
            else:
                bad += 1
                if bad >= patience:
                    stopped_early = True
                    break
        if out_of_time:
            break
    model.load_state_dict(best_state)
    model.eval().to("cpu")
    final = history[[h["step"] for h in history].index(best_step)]
    health = {"criterion": "csls_cos x mutual_share", "score": final["score"], "csls_cos": final["csls_cos"], "mutual_share": final["mutual_share"],
              "base_score": first["score"], "base_csls_cos": first["csls_cos"], "steps": step, "best_step": best_step,
              "stopped_early": stopped_early, "seconds": round(time.perf_counter() - t0, 2), "device": dev}
    config["refine"].update(steps=step, best_step=best_step)
    metrics = dict(translator.metrics, health=health, refine_history=history,
                   base_health=translator.metrics.get("health"))
    return Translator(config, model, metrics)
