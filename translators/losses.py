"""Training losses shared by vec2vec (translators/vec2vec.py) and the non-linear refinement (translators/refine.py).

Each loss is a small nn.Module whose forward returns a dict of NAMED PARTS (scalar tensors). The trainers sum
`weight[name] * part` and log every part, so a run's log shows which term moved. Inputs are batches of vectors
in the trainers' working space (centred, unit rows) unless a docstring says otherwise.

Terms follow the vec2vec paper (arXiv 2505.12540, section 4): adversarial on outputs and on the latent,
reconstruction, cycle consistency, vector-space preservation (VSP). Two extra unsupervised terms serve the
refinement: moment matching (first/second moments of the target distribution) and pseudo pairs from confident
mutual nearest neighbours under CSLS.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from translators.arrays import unit_t



class ReconstructionLoss(nn.Module):
    """1 - cos(x, A->T->B of x in its own space): each side's autoencoder keeps its information."""

    def forward(self, x: torch.Tensor, recon: torch.Tensor, name: str = "rec") -> dict[str, torch.Tensor]:
        return {name: 1.0 - F.cosine_similarity(x, recon, dim=1).mean()}


class CycleLoss(nn.Module):
    """1 - cos(x, G(F(x))): translating there and back lands where it started (the paper's CC term)."""

    def forward(self, x: torch.Tensor, cycled: torch.Tensor, name: str = "cycle") -> dict[str, torch.Tensor]:
        return {name: 1.0 - F.cosine_similarity(x, cycled, dim=1).mean()}


class VSPLoss(nn.Module):
    """Vector-space preservation: the pairwise cosine matrix of a batch survives translation.

    mean |cos(x_i, x_j) - cos(F(x_i), F(x_j))| over the batch. Works across dimensions (only B x B matrices
    are compared), which is why the paper uses it as the geometry-keeping term.
    """

    def forward(self, x: torch.Tensor, translated: torch.Tensor, name: str = "vsp") -> dict[str, torch.Tensor]:
        xs, ts = unit_t(x), unit_t(translated)
        return {name: (xs @ xs.T - ts @ ts.T).abs().mean()}


class Discriminator(nn.Module):
    """MLP critic (SiLU + LayerNorm, as the reference code's); one scalar logit per vector."""

    def __init__(self, dim: int, hidden: int = 512, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(dim, hidden)]
        for _ in range(max(depth - 2, 0)):
            layers += [nn.SiLU(), nn.Linear(hidden, hidden), nn.LayerNorm(hidden)]
        layers += [nn.SiLU(), nn.Linear(hidden, 1)]
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AdversarialLoss(nn.Module):
    """A GAN term with its own discriminator and optimiser (the generator's optimiser never sees these weights).

    style 'least_squares' (the paper's default config) or 'standard' (non-saturating BCE). Call
    `discriminator_step(real, fake)` once per training step (it detaches `fake` and updates the critic), then
    add `generator(fake)` to the generator's loss.
    """

    def __init__(self, dim: int, hidden: int = 512, depth: int = 3, lr: float = 1e-4,
                 style: str = "least_squares", name: str = "gan"):
        super().__init__()
        if style not in ("least_squares", "standard"):
            raise ValueError(f"unknown GAN style {style!r}")
        self.style, self.name = style, name
        self.disc = Discriminator(dim, hidden, depth)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.999))

    def _d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.style == "least_squares":  # real -> 1, fake -> 0
            return 0.5 * (((real_logits - 1) ** 2).mean() + (fake_logits ** 2).mean())
        return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        self.disc.requires_grad_(True)
        loss = self._d_loss(self.disc(real.detach().float()), self.disc(fake.detach().float()))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # the generator's backward must not accumulate grads into the critic
        self.disc.requires_grad_(False)
        return {f"{self.name}_disc": loss.detach()}

    def forward(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.disc(fake)
        if self.style == "least_squares":
            loss = 0.5 * ((logits - 1) ** 2).mean()
        else:
            loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return {self.name: loss}


class MomentMatchingLoss(nn.Module):
    """Match the target distribution's mean and covariance (a cheap, stable distribution-matching term).

    `target_mean`/`target_cov` come from an unpaired target sample; compared in the space the caller uses.
    Parts: `mm_mean` = ||mean(t) - mu||^2, `mm_cov` = mean squared difference of covariance entries (scaled by d so
    the two parts are of similar size), `mm_norm` = (mean ||t - mu||^2 - target's)^2 (the spread/scale).
    """

    def __init__(self, target_mean: torch.Tensor, target_cov: torch.Tensor):
        super().__init__()
        self.register_buffer("mu", target_mean.detach().clone())
        self.register_buffer("cov", target_cov.detach().clone())

    def forward(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        m = t.mean(0)
        c = t - m
        cov = c.T @ c / max(len(t) - 1, 1)
        spread = ((t - self.mu) ** 2).sum(1).mean()
        return {
            "mm_mean": ((m - self.mu) ** 2).sum(),
            "mm_cov": ((cov - self.cov) ** 2).mean() * t.shape[1],
            "mm_norm": (spread - torch.trace(self.cov)) ** 2,
        }


@torch.no_grad()
def csls_matches(translated: torch.Tensor, target: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSLS nearest neighbours (Conneau et al. 2018) between two unit-row sets.

    Returns (nn_of_translated, cos_to_that_nn, mutual_mask): for each translated row its CSLS-nearest target
    row, the plain cosine to it, and whether that target row's CSLS-nearest translated row is this one
    (mutual pairs are the confident ones). CSLS = 2 cos - r_T - r_S discounts hub vectors.
    """
    a, b = unit_t(translated.float()), unit_t(target.float())
    sims = a @ b.T
    k_a, k_b = min(k, sims.shape[1]), min(k, sims.shape[0])
    r_a = sims.topk(k_a, dim=1).values.mean(1)  # how crowded each translated vector's neighbourhood is
    r_b = sims.topk(k_b, dim=0).values.mean(0)
    csls = 2 * sims - r_a[:, None] - r_b[None, :]
    fwd = csls.argmax(1)
    bwd = csls.argmax(0)
    mutual = bwd[fwd] == torch.arange(len(a), device=a.device)
    return fwd, sims.gather(1, fwd[:, None]).squeeze(1), mutual


def csls_criterion(translated: torch.Tensor, target: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Unsupervised model-selection score (as MUSE's): mean cosine of each translation to its CSLS neighbour.

    Also reports the share of mutual neighbours, which drops when translations collapse onto a few hubs, and
    `score` = their product, the criterion the trainers select on. Higher is better for all three. Needs no pairs: `translated` and `target` are different texts.
    """
    _, cos, mutual = csls_matches(translated, target, k)
    c, m = float(cos.mean()), float(mutual.float().mean())
    # score: closeness x agreement. Closeness alone is gamed by pulling every translation into dense target
    # regions (hubs), which also makes matches one-sided, so the mutual share falls and the product with it.
    return {"csls_cos": c, "mutual_share": m, "score": c * m}


class PseudoPairLoss(nn.Module):
    """1 - cos(F(x), y*) for confident pseudo pairs: y* the mutual CSLS neighbour of F(x) in a target pool.

    The pairs are found without gradients (on the current translations); only mutual pairs whose cosine is
    above `min_cos` count, so a wrong match seldom becomes a training signal.
    """

    def __init__(self, min_cos: float = 0.0, k: int = 10):
        super().__init__()
        self.min_cos, self.k = min_cos, k

    def forward(self, translated: torch.Tensor, target_pool: torch.Tensor) -> dict[str, torch.Tensor]:
        nn_idx, cos, mutual = csls_matches(translated.detach(), target_pool, self.k)
        keep = mutual & (cos > self.min_cos)
        if not bool(keep.any()):
            return {"pseudo": translated.sum() * 0.0, "pseudo_share": torch.tensor(0.0)}
        loss = 1.0 - F.cosine_similarity(translated[keep], target_pool[nn_idx[keep]], dim=1).mean()
        return {"pseudo": loss, "pseudo_share": keep.float().mean()}
