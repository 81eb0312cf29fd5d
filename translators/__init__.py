"""Translators: learn a map from model A's vector space to model B's, without pairs by default.

    from translators import fit, load_translator
    t = fit(source_vectors, target_vectors)         # unpaired samples of the two models
    t.save("translator/"); load_translator("translator/")(x)   # float32 (n, d_a) -> (n, d_b)

Importing this package is light (numpy only); torch is imported when a translator is built or loaded.
"""
from __future__ import annotations

import inspect

import numpy as np

from translators.errors import TrainingError, TranslatorError, TranslatorUsageError
from translators.metrics import mean_cosine, mean_rank, neighbour_recall, paired_metrics, recall_at_k, top1

METHODS: tuple[str, ...] = ("auto", "procrustes", "ridge", "vec2vec", "mini-vec2vec", "identity", "random")
# 'auto' clusters each side and refines on mutual nearest neighbours: below this many vectors per side
# the clusters (and so the matching) are too noisy to trust.
MIN_UNSUPERVISED = 256
MIN_SUPERVISED_PAIRS = 2


def fit(source: np.ndarray, target: np.ndarray, *, method: str = "auto", pairs=None, seed: int = 0,
        device: str = "auto", progress: bool = False, **options):
    """Fit a translator source-model -> target-model and return it (see translators.model.Translator).

    source (n_s, d_s) and target (n_t, d_t) are UNPAIRED samples (different texts are fine).
    pairs: optional (X (k, d_s), Y (k, d_t)) vectors of the same k texts under both models.
    """
    from translators import linear
    from translators.arrays import as_matrix
    from translators.model import resolve_device

    if method not in METHODS:
        raise TranslatorUsageError(f"unknown translation method {method!r}.", f"use one of: {', '.join(METHODS)}.")
    source = as_matrix(source, where="source vectors")
    target = as_matrix(target, where="target vectors")
    device = resolve_device(device)
    need_pairs = {"procrustes": MIN_SUPERVISED_PAIRS, "ridge": MIN_SUPERVISED_PAIRS}.get(method, 0)
    pairs = linear.check_pairs(pairs, source.shape[1], target.shape[1], minimum=need_pairs)

    if method in ("auto", "vec2vec", "mini-vec2vec"):
        for side, arr in (("source", source), ("target", target)):
            if len(arr) < MIN_UNSUPERVISED:
                raise TrainingError(f"{method!r} got {len(arr)} {side} vectors; it needs at least "
                                    f"{MIN_UNSUPERVISED} per side (a few thousand give reliable translators).",
                                    f"sample more {side} vectors, or pass known pairs with method 'procrustes'.")
    if method == "auto":
        from translators.unsupervised import fit_auto

        return fit_auto(source, target, pairs=pairs, seed=seed, device=device, progress=progress, **options)
    if method == "mini-vec2vec":
        from translators.minivec2vec import fit_minivec2vec

        return fit_minivec2vec(source, target, pairs=pairs, seed=seed, device=device, progress=progress, **options)
    if method == "vec2vec":
        from translators.vec2vec import fit_vec2vec

        params = inspect.signature(fit_vec2vec).parameters
        if "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            options = dict(options, progress=progress)
        return fit_vec2vec(source, target, pairs=pairs, seed=seed, device=device, **options)
    if options:
        raise TranslatorUsageError(f"method {method!r} takes no options, got {sorted(options)}.", "drop those options.")
    if method in ("procrustes", "ridge"):
        return linear.fit_supervised(method, source, target, pairs, seed=seed)
    if method == "identity":
        return linear.fit_identity(source, target, seed=seed)
    return linear.fit_random(source, target, seed=seed)


def __getattr__(name):
    # Lazy: Translator / load_translator pull in torch, which `import translators` should not.
    if name in ("Translator", "ARCHES", "register_arch"):
        from translators import model

        return getattr(model, name)
    if name == "load_translator":
        from translators.io import load_translator

        return load_translator
    raise AttributeError(name)


__all__ = ["fit", "METHODS", "load_translator", "Translator", "TranslatorError", "mean_cosine", "top1", "mean_rank",
           "paired_metrics", "recall_at_k", "neighbour_recall"]
