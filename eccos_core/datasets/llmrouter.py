"""LLMRouter's default routing data (U Lab @ UIUC, MIT): 9 NVIDIA-hosted LLMs on 14 tasks.

Source layout (``shared/data/llmrouter-9llm/``)::

    dcrouter_preprocessed/{train,test}.json        [{"question", "scores": {model: float}, ...}]
    query_data/default_query_{train,test}.jsonl    {"task_name", "query", ...} per line
    llm_candidates/default_llm.json                {model: {"model", "input_price", "output_price", ...}}

Scores are kept as given (0/1, except commongen's coverage fraction). The data set logs no token counts and no
costs, so the outcomes carry only ``score``: nothing is invented.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from eccos_core.datasets.base import ConvertedDataset, require_dir, require_file, unit_score
from eccos_core.errors import LogFormatError
from eccos_core.logs import LogRecord, Outcome, RoutingLogs
from eccos_core.pricing import ModelSpec

logger = logging.getLogger(__name__)

NAME = "llmrouter-9llm"
LITELLM_PREFIX = "nvidia_nim/"
"""The models were called through NVIDIA-hosted endpoints, which LiteLLM reaches as ``nvidia_nim/<model>``."""
_SPLITS = ("train", "test")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(require_file(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LogFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _task_of_query(source: Path) -> dict[str, str]:
    """Map each query text to its task name.

    Six queries appear twice in ``default_query_train.jsonl`` (once as ``mmlu``, once as ``openbook_qa`` or
    ``arc_challenge``). ``dcrouter_preprocessed/train.json`` lists its questions in the order of that file and
    keeps the first occurrence, so the first task seen wins here too (train file before test file).
    """
    tasks: dict[str, str] = {}
    for split in _SPLITS:
        path = require_file(source / "query_data" / f"default_query_{split}.jsonl")
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LogFormatError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or "query" not in row or "task_name" not in row:
                    raise LogFormatError(f"{path}:{number}: expected an object with 'query' and 'task_name'")
                tasks.setdefault(row["query"], row["task_name"])
    return tasks


def _scores(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    scores = {}
    for model, value in raw.items():
        score = unit_score(value, f"{where}: model {model!r}")
        if score is not None:
            scores[model] = score
    return scores


NIM_CARDS: dict[str, dict[str, Any]] = {
    "qwen2.5-7b-instruct": {"max_input_tokens": 32768, "supports_tools": True},
    "codegemma-7b": {"max_input_tokens": 8192},
    "gemma-2-9b-it": {"max_input_tokens": 8192},
    "llama-3.1-8b-instruct": {"max_input_tokens": 131072, "supports_tools": True},
    "llama3-chatqa-1.5-8b": {"max_input_tokens": 8192},
    "mistral-7b-instruct-v0.3": {"max_input_tokens": 32768, "supports_tools": True},
    "llama-3.3-nemotron-super-49b-v1": {"max_input_tokens": 131072, "supports_tools": True},
    "llama-3.1-nemotron-51b-instruct": {"max_input_tokens": 32768},
    "llama3-chatqa-1.5-70b": {"max_input_tokens": 8192},
}
"""Context windows and tool support of the NVIDIA-hosted models, from their model cards (LiteLLM's price map lists
none of these ids). None of them takes images; structured output is not claimed for any. Override in a models
file where your endpoint differs."""


NIM_MAX_OUTPUT_TOKENS = 4096
"""Output limit assumed for every hosted NVIDIA model (the ``max_tokens`` ceiling of NVIDIA's API catalogue for
these models); stating it keeps the bundled pool from needing LiteLLM's model info at load time."""


def _per_token(usd_per_million: Any) -> float:
    """USD per token from USD per million tokens, rounded so 0.2 becomes 2e-07 rather than 2.0000000000000002e-07."""
    return float(f"{float(usd_per_million) / 1e6:.12g}")


def _models(source: Path, scored: list[str]) -> tuple[ModelSpec, ...]:
    """Pool of the scored models in ``default_llm.json`` order, priced from its USD-per-million columns."""
    path = source / "llm_candidates" / "default_llm.json"
    table = _read_json(path)
    if not isinstance(table, dict):
        raise LogFormatError(f"{path}: expected an object of model name -> description")
    unpriced = [m for m in scored if m not in table]
    if unpriced:
        raise LogFormatError(f"{path}: scored models {unpriced} have no entry, so no price")
    specs = []
    for name, entry in table.items():
        if name not in scored:
            continue  # listed as a candidate but never scored: it could not be routed to
        try:
            litellm_model = LITELLM_PREFIX + str(entry["model"])
            input_price = _per_token(entry["input_price"])
            output_price = _per_token(entry["output_price"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LogFormatError(
                f"{path}: model {name!r} lacks a usable 'model'/'input_price'/'output_price' ({exc})"
            ) from None
        specs.append(
            ModelSpec(
                name=name,
                litellm_model=litellm_model,
                input_cost_per_token=input_price,
                output_cost_per_token=output_price,
                **{
                    "supports_tools": False,
                    "supports_vision": False,
                    "supports_response_schema": False,
                    "max_output_tokens": NIM_MAX_OUTPUT_TOKENS,
                }
                | NIM_CARDS.get(name, {}),
            )
        )
    return tuple(specs)


def convert_llmrouter(source_dir: Path) -> ConvertedDataset:
    """Convert LLMRouter's ``dcrouter_preprocessed`` scores into routing logs and a priced pool.

    Train and test are merged because eccos splits the logs itself (:func:`eccos_core.logs.split_logs`); a
    question in both keeps its train copy. Ids are ``llmrouter-<task>-<n>``, numbered in file order within
    each task, so they are the same on every run.
    """
    source = require_dir(source_dir)
    task_of = _task_of_query(source)
    kept: dict[str, tuple[str, dict[str, float]]] = {}
    conflicting = 0
    duplicates = 0
    empty = 0
    for split in _SPLITS:
        path = source / "dcrouter_preprocessed" / f"{split}.json"
        rows = _read_json(path)
        if not isinstance(rows, list):
            raise LogFormatError(f"{path}: expected a JSON list of {{'question', 'scores'}} objects")
        for index, row in enumerate(rows):
            where = f"{path}[{index}]"
            question = row.get("question") if isinstance(row, dict) else None
            if not isinstance(question, str) or not question.strip():
                raise LogFormatError(f"{where}: 'question' must be a non-empty string")
            scores = _scores(row.get("scores"), where)
            if not scores:
                empty += 1
                continue
            if question in kept:
                duplicates += 1
                if kept[question][1] != scores:
                    conflicting += 1
                    logger.debug("%s: scores differ from the train copy of the same question; kept train", where)
                continue
            task = task_of.get(question)
            if task is None:
                raise LogFormatError(f"{where}: question has no matching 'query' in query_data/, so no task")
            kept[question] = (task, scores)
    if conflicting:
        logger.warning(
            "%s: %d of %d questions found in both train and test have different scores; kept the train copy",
            NAME,
            conflicting,
            duplicates,
        )

    numbers: Counter[str] = Counter()
    records = []
    for question, (task, scores) in kept.items():
        records.append(
            LogRecord(
                id=f"llmrouter-{task}-{numbers[task]}",
                query=question,
                outcomes={model: Outcome(score=score) for model, score in scores.items()},
                task=task,
            )
        )
        numbers[task] += 1
    logs = RoutingLogs(tuple(records), f"{NAME} ({source})")
    models = _models(source, logs.models)
    window_note = (
        "Context windows and tool support from NVIDIA's model cards (LiteLLM's price map lists none of these "
        "nvidia_nim ids)."
    )
    notes = (
        f"LLMRouter default routing data (https://github.com/ulab-uiuc/LLMRouter, commit "
        f"4e7a796942ce26e9d5f2b93191c7c2585c99c2e3, MIT, Copyright (c) 2024 U Lab @UIUC). "
        f"dcrouter_preprocessed train+test merged into {len(records)} distinct questions: {duplicates} test "
        f"questions also in train were dropped (their train copy kept; {conflicting} of them had different "
        f"scores), {empty} rows without scores dropped. Task from query_data task_name (first occurrence "
        f"when a query is listed under two tasks). Scores as given: 0/1, commongen a coverage fraction. "
        f"No token counts or costs exist in these files, so outcomes hold only scores. Prices from "
        f"llm_candidates/default_llm.json (USD per million tokens / 1e6); LiteLLM ids are nvidia_nim/<model>. "
        + window_note
    )
    return ConvertedDataset(NAME, logs, models, notes)
