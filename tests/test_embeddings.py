"""Embeddings are looked up before they are computed: the bundled queries' ship in the package, recent ones stay."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from eccos_core.bundled import bundled_logs, bundled_models
from eccos_core.predictors import encoder as encoder_module
from eccos_core.predictors.encoder import EmbeddingTable, SentenceEncoder, query_key, shipped_embeddings
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.router import Router


class CountingEncoder(SentenceEncoder):
    """The real encoder, counting the texts that reach the model (and refusing them when ``refuse`` is set)."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.computed: list[str] = []

    def forward(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if self.refuse:
            raise AssertionError(f"{len(texts)} texts reached the model: {list(texts)[:2]}")
        self.computed.extend(texts)
        return super().forward(texts, show_progress=show_progress)


def test_every_bundled_query_ships_embedded() -> None:
    table = shipped_embeddings()
    assert table is not None
    logs = bundled_logs()
    assert all(query_key(q) in table.rows for q in logs.queries)
    assert table.vectors.shape == (len(logs), 384)
    norms = np.linalg.norm(table.vectors.astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)  # unit vectors, rounded to float16


def test_a_bundled_query_is_looked_up_and_matches_the_model() -> None:
    queries = bundled_logs().queries[:3]
    looked_up = CountingEncoder(refuse=True).encode(queries)
    fresh = SentenceEncoder().forward(queries)
    assert np.allclose(looked_up, fresh, atol=5e-3)  # float16 in the table


def test_fitting_on_the_bundled_logs_embeds_nothing() -> None:
    pool = [m for m in bundled_models() if m.name in ("qwen2.5-7b-instruct", "llama-3.1-8b-instruct")]
    router = Router.fit(pool, bundled_logs(), predictor=RetrievalPredictor(encoder=CountingEncoder(refuse=True)))
    assert router.planner.names == ("qwen2.5-7b-instruct", "llama-3.1-8b-instruct")


def test_a_text_seen_recently_is_not_embedded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module, "SEEN_CAPACITY", 2)
    enc = CountingEncoder()
    first = enc.encode(["a question nobody logged", "another one", "a question nobody logged"])
    assert enc.computed == ["a question nobody logged", "another one"]  # a repeat inside one call counts once
    again = enc.encode(["a question nobody logged"])
    assert enc.computed == ["a question nobody logged", "another one"]
    assert np.array_equal(again[0], first[0]) and np.array_equal(first[0], first[2])
    enc.encode(["a third", "a fourth"])  # pushes the first two out
    enc.encode(["another one"])
    assert enc.computed[-1] == "another one"
    assert enc.encode([]).shape == (0, 384)


def test_a_table_made_for_another_sequence_length_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    query = bundled_logs().queries[0]
    short = CountingEncoder()
    short.max_seq_length = 8  # the shipped table was embedded with 256 tokens kept
    short.encode([query])
    assert short.computed == [query]


def test_a_damaged_table_is_refused_with_its_shapes() -> None:
    with pytest.raises(ValueError, match="2 keys"):
        EmbeddingTable(["a", "b"], np.zeros((3, 384), np.float16), 256)
