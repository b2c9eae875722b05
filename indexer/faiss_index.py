"""The FAISS side: factory strings (and "auto"), training, id-mapped add/remove, filtered search.

Every index uses inner product on L2-normalised vectors (= cosine) and stores the SQLite chunk
ids as its FAISS ids: IVF indexes natively (their `remove_ids` does not compact internal ids, so
an id map around them would map ids wrongly after a removal), all others inside an
`IndexIDMap` (not `IndexIDMap2`: stored vectors are served from SQLite, so the reverse map it
keeps for `reconstruct` would only cost memory and slow every removal; snapshots written with
`IndexIDMap2` still load). "auto" picks by expected corpus size (vectors):

    < 100k          Flat                          exact; ~0.2 GB per 100k 576-d vectors
    100k .. < 2M    IVF{4*sqrt(n)},Flat           exact vectors, coarse partition (nprobe probes)
    >= 2M           OPQ{m},IVF{4*sqrt(n)},PQ{m}   compressed to m bytes per vector

IVF/PQ factories need training: until enough vectors exist (39 per centroid of the IVF lists
and of the PQ codebooks) the vectors are held in an exact flat index, then the real one is
trained on a sample. Snapshots open memory-mapped on request, zero-copy for flat codes
(`IO_FLAG_MMAP_IFC`) and IVF lists (`IO_FLAG_MMAP`). Index types that cannot remove ids in
place (HNSW) hide deleted ids with an `IDSelectorNot` until the owner rebuilds them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np

AUTO = "auto"
_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")


def auto_factory(n_vectors: int, dim: int) -> str:
    """The factory string "auto" stands for at `n_vectors` expected vectors (see module doc)."""
    if n_vectors < 100_000:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n_vectors)))
    if n_vectors < 2_000_000:
        return f"IVF{nlist},Flat"
    m = max(d for d in range(1, 65) if dim % d == 0)
    return f"OPQ{m},IVF{nlist},PQ{m}"


def validate_factory(factory: str, dim: int) -> None:
    """Raise ValueError with a clear message when FAISS cannot build `factory` for `dim`."""
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else str(exc)
        raise ValueError(f"FAISS cannot build factory {factory!r} for dim {dim}: {first}. "
                         "Examples: Flat, HNSW32, IVF1024,Flat, IVF1024,PQ64, OPQ64,IVF1024,PQ64, auto") from None


def min_train_size(factory: str) -> int:
    """Vectors needed before training is worth it: 39 per centroid, as FAISS advises (0: no training)."""
    need = 0
    if m := _IVF.search(factory):
        need = 39 * int(m.group(1))
    if m := _PQ.search(factory):
        need = max(need, 39 * 2 ** int(m.group(2) or 8))
    return need


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _inner(index: faiss.Index) -> faiss.Index:
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def _all_ids(index: faiss.Index) -> np.ndarray:
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap(faiss.IndexFlatIP(dim))


class VectorIndex:
    """A FAISS index plus what FAISS lacks: an exact stand-in while untrained, hidden ids."""

    def __init__(self, index: faiss.Index, factory: str, *, mmapped: bool = False) -> None:
        self.index = index
        self.factory = factory
        self.mmapped = mmapped
        self.pending: faiss.Index | None = None if index.is_trained else _flat(index.d)
        self.delta: faiss.Index | None = None
        self.hidden = np.empty(0, dtype=np.int64)
        self.max_id = int(_all_ids(index).max()) if index.ntotal else -1
        ivf = _ivf(index)
        self._nlist = int(ivf.nlist) if ivf is not None else None
        self.nprobe = min(ivf.nlist, max(8, ivf.nlist // 16)) if ivf is not None else None
        self.ef_search = 64 if isinstance(_inner(index), faiss.IndexHNSW) else None

    @classmethod
    def create(cls, factory: str, dim: int) -> "VectorIndex":
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if _ivf(index) is None:
            index = faiss.index_factory(dim, f"IDMap,{factory}", faiss.METRIC_INNER_PRODUCT)
        return cls(index, factory)

    @classmethod
    def load(cls, path: Path, factory: str, *, mmap: bool = False) -> "VectorIndex":
        if mmap:  # IO_FLAG_MMAP_IFC maps flat codes (Flat, HNSW storage); IVF lists need IO_FLAG_MMAP alone
            try:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        else:
            index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap) and _ivf(index) is None:
            raise RuntimeError(f"{path} holds a {type(index).__name__}, expected an IndexIDMap or an IVF index")
        vectors = cls(index, factory, mmapped=mmap)
        if not mmap and isinstance(_inner(index), faiss.IndexFlat):
            # A loaded flat array has no spare capacity: its first add would copy all of it. Vectors
            # added after a load go to a small side index instead, folded in when a snapshot is saved.
            vectors.delta = _flat(index.d)
        return vectors

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        active = self.pending if self.pending is not None else self.index
        extra = int(self.delta.ntotal) if self.delta is not None else 0
        return int(active.ntotal) + extra - len(self.hidden)

    def ids(self) -> np.ndarray:
        """Every id the index holds (hidden ones excluded), in insertion order."""
        ids = _all_ids(self.pending if self.pending is not None else self.index)
        if self.delta is not None and self.delta.ntotal:
            ids = np.concatenate([ids, _all_ids(self.delta)])
        return ids[~np.isin(ids, self.hidden)] if len(self.hidden) else ids

    def needs_training(self) -> bool:
        return self.pending is not None

    def train(self, sample: np.ndarray, batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]) -> None:
        """Train on `sample`, then move every vector (`batches()` yields ids, vectors) into the index."""
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.pending = None
        for ids, vectors in batches():
            self.index.add_with_ids(vectors, ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        target = self.pending if self.pending is not None else self.delta if self.delta is not None else self.index
        target.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        self.max_id = max(self.max_id, int(np.max(ids)))

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids (absent ones are ignored); hide them where the index cannot remove."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        target = self.pending if self.pending is not None else self.index
        if self.delta is not None:
            self.delta.remove_ids(faiss.IDSelectorBatch(ids))
        try:
            target.remove_ids(faiss.IDSelectorBatch(ids))
        except RuntimeError:  # e.g. HNSW: no in-place removal
            present = ids[np.isin(ids, _all_ids(target))]
            self.hidden = np.union1d(self.hidden, present)

    @property
    def exact(self) -> bool:
        """Whether a search scans every vector (Flat, or untrained and held flat)."""
        return self.pending is not None or (self.nprobe is None and self.ef_search is None
                                            and "PQ" not in self.factory and "SQ" not in self.factory)

    @property
    def nlist(self) -> int | None:
        """IVF lists of the trained index (None: not IVF, or still held flat)."""
        return self._nlist if self.pending is None else None

    def selector(self, allowed_ids: np.ndarray) -> "Selector":
        """A FAISS ID selector for `allowed_ids` (minus hidden ids): a bitmap when the set is dense
        enough that one bit per id is smaller than a hash set, an `IDSelectorBatch` otherwise."""
        allowed = np.asarray(allowed_ids, dtype=np.int64)
        if len(self.hidden):
            allowed = np.setdiff1d(allowed, self.hidden)
        return Selector(allowed)

    def _params(self, selector: faiss.IDSelector | None, nprobe: int | None,
                ef_search: int | None) -> faiss.SearchParameters | None:
        if self.pending is not None:
            return faiss.SearchParameters(sel=selector) if selector is not None else None
        if self.nprobe is not None:
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.nlist or 1, nprobe or self.nprobe))
        if self.ef_search is not None:
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef_search or self.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None, *,
               selector: "Selector | None" = None, nprobe: int | None = None,
               ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids); id -1 and score -inf pad rows with fewer than k hits.

        `allowed_ids` (or a prepared `selector`) restricts the search inside FAISS; `nprobe` and
        `ef_search` override the IVF / HNSW defaults for this search.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be a [q, {self.dim}] matrix, got shape {queries.shape}")
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        empty = (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64))
        if allowed_ids is not None and selector is None:
            selector = self.selector(allowed_ids)
        faiss_selector = None
        if selector is not None:
            if selector.size == 0:
                return empty
            faiss_selector = selector.faiss
        elif len(self.hidden):
            faiss_selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.hidden))
        if self.ntotal <= 0 or len(queries) == 0:
            return empty
        target = self.pending if self.pending is not None else self.index
        params = self._params(faiss_selector, nprobe, ef_search)
        scores, ids = target.search(queries, k, params=params)
        if self.delta is not None and self.delta.ntotal:  # merge the side index's hits by score
            more_scores, more_ids = self.delta.search(queries, k, params=params)
            scores, ids = np.concatenate([scores, more_scores], 1), np.concatenate([ids, more_ids], 1)
            scores[ids < 0] = -np.inf
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
        scores[ids < 0] = -np.inf
        return scores, ids

    def save(self, path: Path) -> None:
        """Write the index to `path` (the caller makes it atomic); an untrained one is written empty.
        Vectors held in the side index since the load are folded into the main one first."""
        if self.delta is not None and self.delta.ntotal:
            flat = faiss.downcast_index(self.delta.index)
            moved = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim).reshape(-1, self.dim).copy()
            self.index.add_with_ids(moved, _all_ids(self.delta))
            self.delta.reset()
        faiss.write_index(self.index, str(path))


class Selector:
    """The chunk ids a filtered search may return, as a FAISS selector (kept alive with its data)."""

    def __init__(self, allowed: np.ndarray) -> None:
        self.ids = allowed
        self.size = len(allowed)
        top = int(allowed.max()) + 1 if self.size else 0
        if self.size and top // 8 < self.size * 16:  # a bit per id beats a hash set entry per allowed id
            bits = np.zeros(top, dtype=bool)
            bits[allowed] = True
            self._bitmap = np.packbits(bits, bitorder="little")
            self.faiss = faiss.IDSelectorBitmap(len(self._bitmap), faiss.swig_ptr(self._bitmap))  # n: bytes
        else:
            self.faiss = faiss.IDSelectorBatch(allowed)
