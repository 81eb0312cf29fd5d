"""How to get vectors back out of a FAISS index without copying or re-searching it.

`open_layout(path, allow_lossy)` memory-maps the file and returns one of two layouts:

* `RowLayout`: a contiguous row store (IndexFlat, the storage of IndexHNSWFlat, the refine index of
  IndexRefineFlat, and with allow_lossy any IndexFlatCodes such as PQ/SQ/LSH). Rows are read as slices of
  the memory-mapped float32 array (`faiss.rev_swig_ptr` over `get_xb()`): no per-batch copy of the index.
* `ListLayout`: an IVF index, read one inverted list after the other (`invlists.list_size/get_ids/
  get_codes`); IVFFlat codes are the raw float32 vectors. One pass over the lists reads every vector once
  (`reconstruct_n` per batch would rescan the lists each time: quadratic).

Both expose positions 0..n-1 (rows in stream order), the ids stored for them, and gather by position.

IndexIDMap/IndexIDMap2 files (what our writer writes) are not opened by faiss.read_index, which reads the id
map into the heap (8 bytes/row) and for IDMap2 builds a hash map id -> row (~40 bytes/row more): 5 GB at
100M rows. `read_id_mapped` maps the file instead: the sub-index is read zero-copy from the mapping, and
the ids are a view of the file's tail, so opening costs no heap whatever the row count.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from connectors.errors import LossyIndexError, StoreNotFoundError, UnreadableStoreError

METRIC_NAMES = {faiss.METRIC_L2: "l2", faiss.METRIC_INNER_PRODUCT: "ip"}
# IO_FLAG_MMAP_IFC maps the flat code arrays (IndexFlat, HNSW storage, IVF array lists) straight from the
# file in faiss >= 1.10: opening a 10 GB index costs ~0 RAM and ~0 s. (IO_FLAG_MMAP instead turns IVF
# lists into OnDiskInvertedLists and cannot be combined with it; IFC covers both cases.)
READ_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def _lossy(index, what: str) -> LossyIndexError:
    return LossyIndexError(
        f"{type(index).__name__} {what}; the original vectors cannot be recovered, only approximations.",
        "migrate from the original vectors (a Flat/IVFFlat/HNSWFlat index or a Parquet export), or open "
        "the store with allow_lossy=True (URI suffix ?allow_lossy=1) to migrate the reconstructed "
        "approximations.",
    )


def _describe_codes(index) -> str:
    d = index.d
    if isinstance(index, faiss.IndexScalarQuantizer) or isinstance(index, faiss.IndexIVFScalarQuantizer):
        return f"stores {index.code_size}-byte scalar-quantized codes instead of {4 * d}-byte float32 vectors"
    if isinstance(index, faiss.IndexLSH):
        return f"stores {index.code_size}-byte binary hashes instead of {4 * d}-byte float32 vectors"
    if isinstance(index, (faiss.IndexPQ, faiss.IndexIVFPQ)):
        return f"stores {index.code_size}-byte PQ codes instead of {4 * d}-byte float32 vectors"
    size = getattr(index, "code_size", None)
    return f"stores {size}-byte compressed codes instead of {4 * d}-byte float32 vectors"


def _search(owner, id_map, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids): an IDMap index maps its hits itself; a sub-index read by read_id_mapped gives
    positions, mapped here through the file's ids."""
    scores, labels = owner.search(q, k)
    if id_map is not None and not isinstance(owner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        labels = np.where(labels >= 0, np.asarray(id_map)[np.maximum(labels, 0)], -1)
    return scores, labels


class RowLayout:
    kind = "rows"

    def __init__(self, owner, store_index, n: int, dim: int, ids: np.ndarray | None, raw: bool, post):
        self._owner = owner  # keeps the faiss objects (and the mapping) alive while views exist
        self._store = store_index
        self.n, self.dim, self._ids, self._post = n, dim, ids, post
        self._xb = faiss.rev_swig_ptr(store_index.get_xb(), n * dim).reshape(n, dim) if raw and n else None

    def ids_at(self, start: int, stop: int) -> np.ndarray:
        return self._ids[start:stop] if self._ids is not None else np.arange(start, stop, dtype=np.int64)

    def vectors_at(self, start: int, stop: int) -> np.ndarray:
        if self._xb is not None:
            return np.array(self._xb[start:stop], dtype=np.float32)  # copies just this batch
        out = self._store.reconstruct_n(start, stop - start)
        return self._post(out) if self._post else out

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.ids_at(start, stop), dtype=np.int64), self.vectors_at(start, stop)

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        ids = self._ids[positions] if self._ids is not None else positions.copy()
        if self._xb is not None:
            return ids, np.ascontiguousarray(self._xb[positions], dtype=np.float32)
        vecs = np.stack([self._store.reconstruct(int(p)) for p in positions]) if len(positions) else \
            np.zeros((0, self.dim), np.float32)
        return ids, (self._post(vecs) if self._post else vecs)

    def all_ids(self) -> np.ndarray:
        return self.ids_at(0, self.n)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _search(self._owner, self._ids, q, k)


class ListLayout:
    kind = "lists"

    def __init__(self, owner, ivf, dim: int, id_map: np.ndarray | None, raw: bool, post):
        self._owner, self._ivf, self.dim, self._id_map, self._post = owner, ivf, dim, id_map, post
        self._il = ivf.invlists
        self._raw = raw
        self.nlist = ivf.nlist
        self.sizes = np.array([self._il.list_size(l) for l in range(self.nlist)], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])  # global position of each list's row 0
        self.n = int(self.starts[-1])
        self._code_dim = ivf.d  # differs from dim when a pre-transform (PCA, OPQ) reduced the vectors

    def list_ids(self, l: int, start: int, stop: int) -> np.ndarray:
        raw = faiss.rev_swig_ptr(self._il.get_ids(l), int(self.sizes[l]))[start:stop]
        return self._id_map[raw] if self._id_map is not None else np.array(raw, dtype=np.int64)

    def list_vectors(self, l: int, start: int, stop: int) -> np.ndarray:
        if self._raw:  # IVFFlat: the codes are the float32 vectors themselves
            size = int(self.sizes[l])
            codes = faiss.rev_swig_ptr(self._il.get_codes(l), size * self._il.code_size)
            out = np.array(codes.view(np.float32).reshape(size, self._code_dim)[start:stop])
            return self._post(out) if self._post else out
        out = np.empty((stop - start, self._code_dim), dtype=np.float32)
        for j, off in enumerate(range(start, stop)):  # lossy codes: exact decoder of every IVF variant
            self._ivf.reconstruct_from_offset(l, off, faiss.swig_ptr(out[j]))
        return self._post(out) if self._post else out

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows at global positions [start, stop): consecutive pieces of consecutive lists."""
        ids, vecs = [], []
        l = int(np.searchsorted(self.starts, start, side="right") - 1)
        while start < stop:
            off = start - int(self.starts[l])
            take = min(int(self.sizes[l]) - off, stop - start)
            if take > 0:
                ids.append(self.list_ids(l, off, off + take))
                vecs.append(self.list_vectors(l, off, off + take))
                start += take
            l += 1
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate(ids), np.concatenate(vecs)

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lists = np.searchsorted(self.starts, positions, side="right") - 1
        return lists, positions - self.starts[lists]

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        ids = np.empty(len(positions), dtype=np.int64)
        vecs = np.empty((len(positions), self.dim), dtype=np.float32)
        lists, offs = self.locate(positions)
        for l in np.unique(lists):
            sel = np.flatnonzero(lists == l)
            lo, hi = int(offs[sel].min()), int(offs[sel].max()) + 1
            ids[sel] = self.list_ids(int(l), lo, hi)[offs[sel] - lo]
            vecs[sel] = self.list_vectors(int(l), lo, hi)[offs[sel] - lo]
        return ids, vecs

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _search(self._owner, self._id_map, q, k)

    def all_ids(self) -> np.ndarray:
        parts = [self.list_ids(l, 0, int(self.sizes[l])) for l in range(self.nlist) if self.sizes[l]]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_index(path: Path, flags: int = READ_FLAGS):
    if not path.exists():
        raise StoreNotFoundError(f"FAISS index {str(path)!r} does not exist.",
                                 "check the path (faiss:PATH points at the index file).")
    if path.is_dir() or path.stat().st_size == 0:
        raise UnreadableStoreError(f"{str(path)!r} is not a FAISS index file (empty or a folder).",
                                   "point faiss:PATH at a file written by faiss.write_index.")
    try:
        raw = faiss.read_index(str(path), flags)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        hint = "binary indexes (IndexBinary*) are not supported; " if "IB" in first else ""
        raise UnreadableStoreError(
            f"Cannot read FAISS index {str(path)!r} (truncated, corrupt or not a FAISS file): {first[-200:]}",
            f"{hint}re-export the index with faiss.write_index, or restore the file from a backup.",
        ) from None
    top = faiss.downcast_index(raw)
    # The downcast proxy does not own the C++ object: without this reference, `raw` is collected and the
    # index freed under us (segfault on the first read).
    top.referenced_objects = [raw]
    return top


_IDMAP_FOURCCS = (b"IxMp", b"IxM2")
_HEADER = 37  # fourcc, then d (int32), ntotal (int64), two dummies (int64), is_trained (bool), metric (int32)


def read_id_mapped(path: Path):
    """(sub-index, ids) of an IndexIDMap/IndexIDMap2 file, both backed by a read-only map of the file; None
    when the file is anything else (then faiss.read_index reads it, and reports any damage)."""
    try:
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None
    if len(mm) < 2 * _HEADER or bytes(mm[:4]) not in _IDMAP_FOURCCS:
        return None
    n, metric = int(mm[8:16].view(np.int64)[0]), int(mm[33:37].view(np.int32)[0])
    end = len(mm) - 8 * n - 8  # the id map is the last field: its length (uint64), then n int64 ids
    if metric not in METRIC_NAMES or n < 0 or end <= _HEADER or int(mm[end:end + 8].view(np.uint64)[0]) != n:
        return None
    body = mm[_HEADER:end]
    reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(body), len(body))
    try:
        raw = faiss.read_index(reader, READ_FLAGS)
    except RuntimeError:
        return None
    inner = faiss.downcast_index(raw)
    if inner.ntotal != n:
        return None
    inner.referenced_objects = [raw, reader, mm]  # the index's arrays point into the mapping
    return inner, mm[end + 8:].view(np.int64)


def describe_index(top) -> dict:
    """The neutral INDEX (connectors.schema) of a FAISS index: flat, hnsw (m, ef_construction), ivf_flat
    (nlist, nprobe), or the index's own type for the others."""
    index = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else top
    if isinstance(index, faiss.IndexHNSWFlat):
        return {"type": "hnsw", "m": int(index.hnsw.nb_neighbors(1)), "ef_construction": int(index.hnsw.efConstruction)}
    if type(index) is faiss.IndexIVFFlat:
        return {"type": "ivf_flat", "nlist": int(index.nlist), "nprobe": int(index.nprobe)}
    if type(index) in (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP):
        return {"type": "flat"}
    return {"type": type(index).__name__.lower(), "params": {}}


def open_layout(path: Path, allow_lossy: bool = False):
    """(layout, metric name, top-level index type name)."""
    mapped = read_id_mapped(path) if path.is_file() else None
    top = mapped[0] if mapped else read_index(path)
    dim, metric_type = top.d, top.metric_type
    if metric_type not in METRIC_NAMES:
        raise UnreadableStoreError(f"FAISS index {str(path)!r} uses metric type {metric_type}.",
                                   "only L2 and inner-product indexes can be migrated.")
    index, id_map, post = top, None, None
    if mapped:  # `top` is the sub-index: its search gives positions, mapped to ids by the layout
        id_map = mapped[1]
    elif isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        id_map = faiss.rev_swig_ptr(index.id_map.data(), index.ntotal) if index.ntotal else np.zeros(0, np.int64)
        index = faiss.downcast_index(index.index)
    if isinstance(index, faiss.IndexPreTransform):
        chain = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
        if not allow_lossy:
            names = "+".join(type(t).__name__ for t in chain)
            inner = _describe_codes(faiss.downcast_index(index.index))
            raise _lossy(index, f"stores vectors transformed by {names} (then {inner})")

        def post(x, chain=chain):  # undo the transforms, last first
            for t in reversed(chain):
                x = t.reverse_transform(x)
            return np.ascontiguousarray(x, dtype=np.float32)
        index = faiss.downcast_index(index.index)
        allow_lossy = True
    if isinstance(index, faiss.IndexRefine):
        refine = faiss.downcast_index(index.refine_index)
        index = refine if isinstance(refine, faiss.IndexFlat) else faiss.downcast_index(index.base_index)
    if isinstance(index, faiss.IndexHNSW):
        index = faiss.downcast_index(index.storage)
    if isinstance(index, faiss.IndexIVF):
        raw = type(index) is faiss.IndexIVFFlat
        if not raw and not allow_lossy:
            raise _lossy(index, _describe_codes(index))
        return ListLayout(top, index, dim, id_map, raw, post), METRIC_NAMES[metric_type], type(top).__name__
    if isinstance(index, faiss.IndexFlat):
        return (RowLayout(top, index, index.ntotal, dim, id_map, post is None, post),
                METRIC_NAMES[metric_type], type(top).__name__)
    if isinstance(index, faiss.IndexFlatCodes):
        if not allow_lossy:
            raise _lossy(index, _describe_codes(index))
        return (RowLayout(top, index, index.ntotal, dim, id_map, False, post),
                METRIC_NAMES[metric_type], type(top).__name__)
    raise UnreadableStoreError(
        f"FAISS index {str(path)!r} has an unsupported layout ({type(index).__name__}).",
        "export its vectors to a Flat, IVFFlat or HNSWFlat index (or Parquet) and migrate from that.",
    )
