"""The default method ('auto'): learn A -> B from unpaired samples (plus optional known pairs).

1. Fit space: each side normalised, centred, normalised (translators.linear).
2. Initial maps: (a) rows matched across spaces by rotation-invariant similarity profiles, bootstrapped by
   stochastic dictionary induction (VecMap); (b) one per GW restart: spherical k-means on each side; an entropic Gromov-Wasserstein coupling of
   the two weighted centroid-similarity matrices (a soft, annealed relative of the QAP matching of
   mini-vec2vec, arXiv 2510.02348) gives each source centroid a target barycentre; weighted Procrustes on
   those anchors. Known pairs join as anchors (each weighs `pair_weight` rows), and give a restart of their own.
3. Refinement: Wasserstein-Procrustes. Translate, couple the two samples by entropic optimal transport
   (uniform marginals, eps annealed), Procrustes of each source row onto its transport barycentre
   (+ known pairs), repeat; each round over-relaxed (momentum 1, see _refine_ot). The balanced plan is a
   global constraint: from the same in-basin starts it reached top-1 0.85-0.99 where CSLS mutual-NN rounds
   (VecMap / MUSE style, still `refinement='csls'`) stalled at 0.57-0.88 (benchmarks/ot_refinement.py;
   results/ot_refinement.txt). It does not rescue a start with top-1 ~0, and its own optimum lies below the
   supervised map (see that file).
4. Restarts are ranked by the mean cosine of mutual-NN pairs on a held-out unpaired sample (never labels);
   the best is refined again at the final temperature (lower for larger samples: final_temperature) on up to
   12,000 rows per side drawn from ALL rows (the held-out ones too: the choice is made, and OT's bias shrinks
   with sample size, see benchmarks/results/ot_refinement.txt), until the OT objective levels off (at most 48
   rounds). A fixed 12 rounds stopped short of the optimum: 2 of 5 mpnet->minilm seeds ended at top-1
   0.62-0.65 instead of 0.97. The criterion reported after it has seen those rows.
5. Optional (off by default) ridge on confident pseudo-pairs (`ridge="auto"` keeps it when it raises the
   held-out criterion: on minilm->mpnet it did, while true top-1 fell 0.96 -> 0.75, so it is not trusted) and
   non-linear refinement (translators.refine, kept likewise when asked for).
Deterministic for a seed: every random choice draws from numpy Generators seeded from `seed`.
"""
from __future__ import annotations

import time

import numpy as np

from translators.arrays import unit
from translators.errors import TranslatorUsageError
from translators.health import health_in_fit_space
from translators.linear import output_config, polar, procrustes, ridge, side_stats, to_fit_space
from translators.matching import (csls_mutual_nn, gromov_wasserstein, ot_barycentres, similarity_profiles,
                                  spherical_kmeans)
from translators.minivec2vec import mean_of_nearest
from translators.model import Translator, linear_translator, resolve_device

DEFAULTS = {
    "restarts": 2,           # Gromov-Wasserstein initialisations tried (besides profiles and known pairs)
    "clusters": 128,         # k-means centroids per side for the GW matching
    "sample": 6000,          # vectors per side used while refining each restart
    "refinement": "ot",      # 'ot' (Wasserstein-Procrustes) | 'csls' (mutual-NN Procrustes rounds)
    "ot_eps": [0.1, 0.05],   # transport temperature, annealed geometrically from the first to the second
    "final_eps": "auto",     # temperatures of the final stage, each run until the OT objective levels off:
                             # a list, or "auto": final_temperature(rows per side in that stage)
    "iterations": 10,        # refinement rounds per restart
    "final_sample": 12000,   # vectors per side (from all rows) for the last refinement of the chosen start
    "final_iterations": 48,  # at most this many rounds at the final temperature; they stop when the OT
                             # objective levels off (mpnet->minilm from the profile start: ~32 rounds)
    "momentum": 1.0,         # over-relaxation of the OT rounds (see _refine_ot)
    "eval_sample": 3000,     # held-out unpaired vectors per side for the selection criterion
    "gw_eps": 2e-3,
    "profile_sample": 5000,  # vectors per side matched by similarity profiles (one more restart). The start
                             # gets much better with more rows: minilm->mpnet seeds 3 / 5 / 7, top-1 after the
                             # start's rounds 0.025 / 0.108 / 0.065 at 3,000 against 0.980 / 0.907 / 0.492 at
                             # 5,000; seed 3 failed at 3,000 (fidelity.txt S5-3)
    "induction_iterations": 40,  # stochastic dictionary induction rounds after the profile match
    "pair_weight": 3.0,      # weight of one known pair relative to one row's transport barycentre. 3 beat 10
                             # with 100-300 pairs on every pair measured (minilm->e5, 100 pairs: top-1 0.635 vs
                             # 0.529); with 1,000-3,000 the two were within 0.006 (fidelity.txt S4-7)
    "relative_start_below": 1000,  # known pairs: below this many, start from them as relative anchors
    "relative_neighbours": 50,     # target rows averaged per source row in that start
    "relative_rounds": 2,          # rounds adding the most confident mutual pairs as anchors
    "relative_confident": 500,     # how many
    "ridge": False,          # True | "auto" (kept when the criterion rises: it picked ridge maps with lower top-1, so off)
    "identity_start": True,  # also start from the identity when both dimensions are equal
    "refine": False,         # non-linear refinement (translators.refine): 'auto' (kept if it helps) | True | False
}
# The final stage's best transport temperature falls as its sample grows (more rows per side: a sharper plan
# stays well-averaged, and is less biased). Top-1 measured (benchmarks/results/fidelity.txt S4, and
# gpu_fidelity_l3_minilm.txt): with ~5,900 rows per side 0.05 beat 0.03 on mpnet->minilm (0.974 vs 0.965),
# minilm->mpnet (0.983 vs 0.978) and l3->minilm subsampled (0.784 vs 0.767); with 8,400 l3->minilm rows 0.04 /
# 0.03 / 0.05 gave 0.865 / 0.863 / 0.849; with ~10,900, 0.03 beat 0.05 on l3->minilm (0.903 vs 0.880) and
# minilm->l3 (0.898 vs 0.874). Geometric interpolation between, constant outside.
FINAL_EPS_BY_ROWS = ((6000, 0.05), (10000, 0.03))


def final_temperature(rows: int) -> float:
    """The final stage's transport temperature for `rows` vectors per side (FINAL_EPS_BY_ROWS)."""
    (n0, e0), (n1, e1) = FINAL_EPS_BY_ROWS
    t = float(np.clip((np.log(max(rows, 1)) - np.log(n0)) / (np.log(n1) - np.log(n0)), 0.0, 1.0))
    return float(np.exp(np.log(e0) + t * (np.log(e1) - np.log(e0))))


# Sinkhorn stops once every row's transport mass is within 0.1% of its share (100 fixed iterations before; at
# eps 0.05 on 10.9k rows per side that tolerance took 30, at 0.03 about 100). Each round starts from the last
# plan's column scaling.
SINKHORN_TOL = 1e-3
CSLS_FINAL_ROUNDS = 12  # final mutual-NN rounds of refinement='csls' (its count before the OT stage got a cap of 48)


def _take(rng, arr, n):
    return arr[rng.choice(len(arr), min(n, len(arr)), replace=False)]


def _weighted_procrustes(xa, ya, wts, pairs_f, pair_weight):
    """Procrustes on anchors (xa, ya) with weights wts, known pairs (if any) joining at pair_weight each."""
    if pairs_f is not None:
        xa, ya = np.concatenate([xa, pairs_f[0]]), np.concatenate([ya, pairs_f[1]])
        wts = np.concatenate([wts, np.full(len(pairs_f[0]), pair_weight, np.float32)])
    return procrustes(xa, ya, wts)


def _refine_linear(w, xs, ys, pairs_f, iterations, pair_weight):
    """CSLS mutual-NN / Procrustes rounds; returns the final W."""
    for _ in range(iterations):
        i, j, _, _, _ = csls_mutual_nn(unit(xs @ w), ys)
        if len(i) < 2 and pairs_f is None:
            break
        w = _weighted_procrustes(xs[i], ys[j], np.ones(len(i), np.float32), pairs_f, pair_weight)
    return w


def _refine_ot(w, xs, ys, pairs_f, eps_list, pair_weight, momentum=0.0, device="cpu", stop_gain=None, warm=None):
    """Wasserstein-Procrustes rounds: Procrustes of each source row onto its OT barycentre, one per eps.

    Over-relaxation: from a start partly in the basin the rounds climb slowly but steadily in one direction
    (mpnet->minilm from a 0.34 start, top-1 after 12 rounds: 0.67 plain, 0.85 with momentum 1, 0.87 with 2
    but lower cosine: it oscillates), so each round steps `momentum` times the last move past the new map,
    back onto the semi-orthogonal set. The last two rounds are plain, to settle.
    `stop_gain`: every 4 rounds, stop (after two plain rounds) once the objective, the mean cosine of the
    translated rows to their barycentres, rose less than this. It levels off where true top-1 does
    (mpnet->minilm: objective 0.310 -> 0.312 -> 0.312 at rounds 28/32/36 as top-1 went 0.980/0.980/0.980),
    unlike the held-out mutual-NN criterion, which stalled at 0.22 while top-1 climbed from 0.88 to 0.93.
    """
    best, warm = -np.inf, {} if warm is None else warm
    for r, eps in enumerate(eps_list):
        z = unit(xs @ w)
        bary = ot_barycentres(z, ys, eps, device=device, tol=SINKHORN_TOL, warm=warm)
        w_new = _weighted_procrustes(xs, bary, np.ones(len(xs), np.float32), pairs_f, pair_weight)
        settle = r >= len(eps_list) - 2
        w = polar(w_new + momentum * (w_new - w)) if momentum and not settle else w_new
        if stop_gain is not None and not settle and (r + 1) % 4 == 0:
            objective = float(np.mean(np.sum(z * bary, axis=1)))
            if objective < best + stop_gain:
                return _refine_ot(w, xs, ys, pairs_f, eps_list[-2:], pair_weight, 0.0, device, warm=warm)
            best = objective
    return w


def _stochastic_induction(w, xs, ys, rng, iterations):
    """VecMap's stochastic dictionary induction: escape a weak start's local optimum.

    Each round keeps a random share p of the similarity entries, pairs every row with its best CSLS
    partner both ways, and refits Procrustes; p doubles whenever the objective (mean best cosine) stalls.
    From a start with ~2% right pairs this reaches the right map where plain mutual-NN rounds get stuck.
    """
    keep, best, stall = 0.1, -np.inf, 0
    n, m = len(xs), len(ys)
    for _ in range(iterations):
        sims = unit(xs @ w) @ ys.T
        if keep < 1.0:
            sims = np.where(rng.random(sims.shape, dtype=np.float32) < keep, sims, np.float32(-10.0))
        k = min(10, n - 1, m - 1)
        r_y = -np.mean(np.partition(-sims, k, axis=0)[:k], axis=0)
        r_x = -np.mean(np.partition(-sims, k, axis=1)[:, :k], axis=1)
        csls = 2 * sims - r_x[:, None] - r_y[None, :]
        src = np.concatenate([np.arange(n), np.argmax(csls, axis=0)])
        tgt = np.concatenate([np.argmax(csls, axis=1), np.arange(m)])
        w = procrustes(xs[src], ys[tgt])
        objective = float(np.mean(np.max(unit(xs @ w) @ ys.T, axis=1)))
        if objective > best + 1e-4:
            best, stall = objective, 0
        else:
            stall += 1
            if stall >= 2:
                if keep >= 1.0:
                    break
                keep, stall = min(1.0, 2 * keep), 0
    return w


def _criterion(w, x_eval, y_eval) -> float:
    _, _, cos, _, _ = csls_mutual_nn(unit(x_eval @ w), y_eval)
    # mean cosine of mutual pairs x their share: a map that pairs few points very well does not win
    return float(cos.sum() / len(x_eval)) if len(cos) else 0.0


def _gw_init(xs, ys, rng, clusters, eps, pairs_f, pair_weight):
    ca, na = spherical_kmeans(xs, clusters, rng)
    cb, nb = spherical_kmeans(ys, clusters, rng)
    p, q = na / na.sum(), nb / nb.sum()
    coupling, loss = gromov_wasserstein(ca @ ca.T, cb @ cb.T, p, q, rng, eps=eps)
    barycentres = unit((coupling / np.maximum(coupling.sum(axis=1, keepdims=True), 1e-300)) @ cb)
    return _weighted_procrustes(ca, barycentres, (na / na.mean()).astype(np.float32), pairs_f, pair_weight), loss


def _refiner(opt, pairs_f, dev):
    """refine(w, xs, ys, final_eps=None): the rounds each start gets, or (given final_eps, a list of
    temperatures) the final stage's."""
    eps_hi, eps_lo = (float(e) for e in opt["ot_eps"])

    def refine(w, xs, ys, final_eps=None):
        final = final_eps is not None
        if opt["refinement"] == "csls":
            # final_iterations caps the OT stage, which stops on its objective; CSLS rounds have no such stop
            n_iter = min(CSLS_FINAL_ROUNDS, int(opt["final_iterations"])) if final else opt["iterations"]
            return _refine_linear(w, xs, ys, pairs_f, int(n_iter), opt["pair_weight"])
        if final:
            for eps in final_eps:
                w = _refine_ot(w, xs, ys, pairs_f, [float(eps)] * int(opt["final_iterations"]), opt["pair_weight"],
                               float(opt["momentum"]), dev, stop_gain=1e-3)
            return w
        return _refine_ot(w, xs, ys, pairs_f, list(np.geomspace(eps_hi, eps_lo, int(opt["iterations"]))),
                          opt["pair_weight"], float(opt["momentum"]), dev)
    return refine


def _starts(xs, ys, pairs_f, opt, seed):
    """Yield (W0, origin, note) for every initial map, lazily (each is refined before the next is made)."""
    if pairs_f is not None and len(pairs_f[0]) >= 2:
        if len(pairs_f[0]) < int(opt["relative_start_below"]):
            yield _relative_pairs_start(xs, ys, pairs_f, opt), "pairs", "known pairs as relative anchors"
        else:
            yield procrustes(*pairs_f), "pairs", "known pairs"
    if opt["identity_start"] and xs.shape[1] == ys.shape[1]:
        # Models fine-tuned from one base checkpoint (e.g. the MiniLM family) often keep its coordinates:
        # the identity is then a start inside the right basin. The criterion decides, as for every start.
        yield np.eye(xs.shape[1], dtype=np.float32), "identity", "the identity (same dimension)"
    n_prof = min(int(opt["profile_sample"]), len(xs), len(ys))
    if n_prof >= 64:
        xp, yp = xs[:n_prof], ys[:n_prof]  # same count both sides: profile positions must mean the same
        i, j, _, _, _ = csls_mutual_nn(similarity_profiles(xp), similarity_profiles(yp))
        w = _stochastic_induction(procrustes(xp[i], yp[j]), xp, yp, np.random.default_rng([seed, 999]),
                                  int(opt["induction_iterations"]))
        yield w, "profiles", f"similarity profiles ({len(i)} matches)"
    for r in range(int(opt["restarts"])):
        w0, loss = _gw_init(xs, ys, np.random.default_rng([seed, r]), int(opt["clusters"]), float(opt["gw_eps"]),
                            pairs_f, opt["pair_weight"])
        yield w0, f"gw{r}", f"GW restart {r} (loss {loss:.5f})"


def _relative_pairs_start(xs, ys, pairs_f, opt):
    """A start from few known pairs: every row described by its cosines to its side's known pairs (relative
    representations, as mini-vec2vec does with matched centroids), each source row paired with the mean of
    its nearest target rows in that shared description, Procrustes (the pairs joining at pair_weight); then
    `relative_rounds` times the most confident CSLS mutual pairs of that map join the anchors. On minilm->e5
    (fit space, 25.9k rows per side) it starts at top-1 0.018 / 0.19 / 0.54 / 0.79 from 10 / 30 / 100 / 300
    pairs, where Procrustes on the pairs alone gives 0.001 / 0.017 / 0.19 / 0.71; two confident rounds took the
    30-pair start from 0.14 to 0.26 on 12k rows (docs/translators.md)."""
    ax, ay = pairs_f
    w = None
    for _ in range(int(opt["relative_rounds"]) + 1):
        soft = mean_of_nearest(unit(xs) @ unit(ax).T, unit(ys) @ unit(ay).T, ys, int(opt["relative_neighbours"]))
        w = _weighted_procrustes(xs, soft, np.ones(len(xs), np.float32), pairs_f, opt["pair_weight"])
        i, j, _, csls, _ = csls_mutual_nn(unit(xs @ w), ys)
        keep = np.argsort(-csls)[:int(opt["relative_confident"])]
        ax, ay = np.concatenate([pairs_f[0], xs[i[keep]]]), np.concatenate([pairs_f[1], ys[j[keep]]])
    return w


def _ridge_stage(w, score, xs, ys, x_eval, y_eval, pairs_f, mode, say):
    """Ridge on confident pseudo-pairs (+ known pairs); kept when mode is True or it raises the criterion."""
    i, j, _, csls, _ = csls_mutual_nn(unit(xs @ w), ys)
    confident = csls >= np.median(csls) if len(csls) else np.zeros(0, bool)
    xa, ya = xs[i[confident]], ys[j[confident]]
    if pairs_f is not None:
        xa, ya = np.concatenate([xa, pairs_f[0]]), np.concatenate([ya, pairs_f[1]])
    if len(xa) > 2 * xs.shape[1]:
        w_ridge = ridge(xa, ya, lam=0.1 * len(xa) / xs.shape[1])
        ridge_score = _criterion(w_ridge, x_eval, y_eval)
        say(f"ridge on {len(xa)} confident pairs: criterion {ridge_score:.4f}")
        if mode is True or ridge_score > score:
            return w_ridge, ridge_score, "ridge"
    return w, score, "procrustes"


def fit_auto(source, target, pairs=None, seed: int = 0, device: str = "cpu", progress: bool = False,
             **options) -> Translator:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TranslatorUsageError(f"unknown option(s) for method 'auto': {sorted(unknown)}.",
                         f"use only: {', '.join(sorted(DEFAULTS))}.")
    opt = {**DEFAULTS, **options}
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    s_stats, t_stats = side_stats(source), side_stats(target)
    x_all, y_all = to_fit_space(source, s_stats["mean"]), to_fit_space(target, t_stats["mean"])
    # Held-out unpaired evaluation rows for the selection criterion and health, disjoint from training rows
    # where the sample is large enough to spare them.
    x_perm, y_perm = rng.permutation(len(x_all)), rng.permutation(len(y_all))
    n_ex = min(opt["eval_sample"], len(x_all) // 3)
    n_ey = min(opt["eval_sample"], len(y_all) // 3)
    x_eval, y_eval = x_all[x_perm[:n_ex]], y_all[y_perm[:n_ey]]
    x_train, y_train = x_all[x_perm[n_ex:]], y_all[y_perm[n_ey:]]
    pairs_f = None
    if pairs is not None:
        pairs_f = (to_fit_space(pairs[0], s_stats["mean"]), to_fit_space(pairs[1], t_stats["mean"]))

    def say(msg):
        if progress:
            print(f"[auto {time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    if opt["refinement"] not in ("ot", "csls"):
        raise TranslatorUsageError(f"unknown refinement {opt['refinement']!r} for method 'auto'.", "use 'ot' or 'csls'.")
    refine = _refiner(opt, pairs_f, resolve_device(device))  # the device runs the transport kernels only

    xs, ys = _take(rng, x_train, opt["sample"]), _take(rng, y_train, opt["sample"])
    candidates = []  # (criterion, W, origin)
    for w0, origin, note in _starts(xs, ys, pairs_f, opt, seed):
        w = refine(w0, xs, ys)
        candidates.append((_criterion(w, x_eval, y_eval), w, origin))
        say(f"restart from {note}: criterion {candidates[-1][0]:.4f}")
    order = sorted(range(len(candidates)), key=lambda c: -candidates[c][0])
    best_score, w, origin = candidates[order[0]]
    z_best = unit(x_eval @ w)
    agreements = [float(np.mean(np.sum(z_best * unit(x_eval @ candidates[c][1]), axis=1))) for c in order[1:]]

    xs, ys = _take(rng, x_all, opt["final_sample"]), _take(rng, y_all, opt["final_sample"])
    final_eps = opt["final_eps"]
    if final_eps == "auto":
        final_eps = [final_temperature(min(len(xs), len(ys)))]
    final_eps = [float(e) for e in np.atleast_1d(final_eps)]
    w = refine(w, xs, ys, final_eps=final_eps)
    score = _criterion(w, x_eval, y_eval)
    say(f"chosen {origin}, after final refinement: criterion {score:.4f}")
    stage = "procrustes"
    if opt["ridge"]:
        w, score, stage = _ridge_stage(w, score, xs, ys, x_eval, y_eval, pairs_f, opt["ridge"], say)

    health = health_in_fit_space(unit(x_eval @ w), x_eval, y_eval, seed)
    health.update({
        "criterion": score,
        "restart_agreement": float(np.mean(np.array(agreements) > 0.9)) if agreements else None,
        "restart_best_other_agreement": max(agreements) if agreements else None,
        "restart_criteria": [round(c[0], 5) for c in candidates],
    })
    cfg = {"method": "auto", "seed": int(seed), **output_config(t_stats),
           "stages": {"init": origin, "final": stage, "final_eps": final_eps},
           "options": {k: opt[k] for k in sorted(DEFAULTS)},
           "training_data": {"source_rows": int(len(source)), "target_rows": int(len(target)),
                             "pairs": 0 if pairs is None else int(len(pairs[0]))}}
    translator = linear_translator(w, s_stats["mean"], t_stats["mean"], cfg,
                                   {"health": health, "fit_seconds": time.perf_counter() - started})
    return _maybe_refine(translator, source, target, seed, device, opt["refine"], say)


def _maybe_refine(translator, source, target, seed, device, refine, say):
    """Non-linear residual refinement (translators.refine, another module) where it measurably helps."""
    if not refine:
        return translator
    try:
        from translators.refine import refine_translator
    except ImportError:
        if refine is True:
            raise TranslatorUsageError("non-linear refinement was asked for but translators.refine is not available.",
                             "drop refine=True or install the full v2v-migrate.") from None
        return translator
    from translators.health import health_metrics

    refined = refine_translator(translator, source, target, seed=seed, device=device)
    before = health_metrics(translator, source, target, seed)
    after = health_metrics(refined, source, target, seed)
    say(f"non-linear refinement: mutual-NN cosine {before['mnn_mean_cosine']:.4f} -> {after['mnn_mean_cosine']:.4f}")
    # keep this module's health figures under 'health' (the refiner reports its own under 'refine_health')
    refined.metrics["refine_health"] = refined.metrics.get("health")
    refined.metrics["health"] = after
    if refine is True or after["mnn_mean_cosine"] > before["mnn_mean_cosine"]:
        return refined
    return translator
