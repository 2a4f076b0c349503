"""Stand-ins shared by several test modules (imported as ``from stubs import ...``; ``tests/`` is on the path)."""

from __future__ import annotations

import hashlib

import numpy as np


class StubEncoder:
    """Hashed bag-of-words unit vectors (384-d, like MiniLM): a deterministic encoder without torch."""

    max_seq_length = 256
    dtype = "auto"

    def encode(self, texts, *, show_progress=False):
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in str(text).lower().split():
                digest = hashlib.blake2b(word.encode("utf-8", "replace"), digest_size=4).digest()
                out[i, int.from_bytes(digest, "little") % 384] += 1.0
            out[i, i % 384] += 1e-3  # no all-zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)
