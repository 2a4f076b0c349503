"""The LangChain and LlamaIndex classes pass outcomes on to their router's retrieval store."""

from __future__ import annotations

from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.router import Router


def test_both_shells_record_outcomes_in_their_routers_store(tmp_path, make_pool, predictor):
    from langchain_eccos import ChatECCOS
    from llamaindex_eccos import ECCOSLLM

    own = RetrievalPredictor.load(predictor.save(tmp_path / "p"))  # a private copy: the fixture is shared
    router = Router(make_pool(["gemma-2-9b-it", "llama-3.1-8b-instruct"]), own)
    before = own.n_queries

    ChatECCOS(router=router).record_outcome("What is the capital of Peru?", "gemma-2-9b-it", 1.0, 12)
    ECCOSLLM(router=router).record_outcome("What is the capital of Chile?", "llama-3.1-8b-instruct", 0.0)

    assert own.n_queries == before + 2
    assert router.predict(["What is the capital of Peru?"]).quality.shape == (1, 2)
