"""GPU helpers for the scale path: exact k-NN search on FAISS GPU when faiss-gpu is installed.

`exact_topk` is what the report's exact search (ground truth for retrieval retention and ANN recall) can
call on large pools: FAISS GPU flat search when `faiss.get_num_gpus() > 0` (the `faiss-gpu` package; the
default `faiss-cpu` build reports 0), else FAISS CPU flat search, both exact. Cosine is inner product on
L2-normalised copies. Results are the same on either path up to float rounding (ties may order differently).
"""
from __future__ import annotations

import numpy as np

from connectors.base import check_metric, validate_vectors


def faiss_gpu_count() -> int:
    """GPUs FAISS can use here: 0 with faiss-cpu, or when no CUDA device is visible."""
    try:
        import faiss

        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:  # a faiss-gpu build on a machine without a driver raises here: CPU it is
        return 0


def exact_topk(queries: np.ndarray, docs: np.ndarray, metric: str, k: int,
               use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(scores (q, k), row indices into docs (q, k), 'faiss-gpu' | 'faiss-cpu'), best first.

    Scores are similarities for 'cosine'/'ip' and squared L2 distances for 'l2' (FAISS's convention).
    `use_gpu=None` uses the GPU when FAISS has one; True without one falls back to the CPU.
    """
    import faiss

    metric = check_metric(metric)
    d = docs.shape[1] if np.ndim(docs) == 2 else None
    q = validate_vectors(queries, d, where="queries").copy()
    x = validate_vectors(docs, q.shape[1], where="documents").copy()
    k = int(min(k, len(x)))
    if metric == "cosine":
        faiss.normalize_L2(q)
        faiss.normalize_L2(x)
    index = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
    where = "faiss-cpu"
    if (use_gpu is None or use_gpu) and faiss_gpu_count() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
        where = "faiss-gpu"
    index.add(x)
    scores, rows = index.search(q, k)
    return scores, rows, where
