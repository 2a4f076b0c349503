"""RouterDC's 7-LLM routing data (``datasets/split2_model7/``): seven open 7-8B models on ten tasks.

Source layout (``shared/data/routerdc-7llm/``): one JSON list of ``{"question", "scores": {model: float}}``
per task and split (``mmlu_train.json``, ``gsm8k-test.json``, ``ceval.json``, ...).

The data logs scores only: no responses, token counts or costs. Prices are therefore an assumption (see
:data:`PRICE_ASSUMPTION`), and the outcomes carry only ``score``.

No license: convert it for local benchmarks only, never into the package.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

from eccos_core.datasets.base import ConvertedDataset, require_dir, unit_score
from eccos_core.errors import LogFormatError
from eccos_core.logs import LogRecord, Outcome, RoutingLogs
from eccos_core.pricing import ModelSpec

logger = logging.getLogger(__name__)

NAME = "routerdc-7llm"

TASKS = (
    "mmlu",
    "gsm8k",
    "MATH_prealgebra",
    "arc_challenge",
    "arc_easy",
    "cmmlu",
    "ceval",
    "humaneval",
    "mbpp",
    "javascript",
)
"""Task names, taken from the file names with the split suffix removed."""

_MULTIPLE_CHOICE = frozenset({"mmlu", "cmmlu", "ceval", "arc_challenge", "arc_easy"})
"""Log-likelihood tasks: the score is 0 when the model's top choice is wrong, else the normalised probability
of the correct option, so any score > 0 means correct. Converted to 1.0/0.0 so scores mean the same everywhere.
"""
# gsm8k, humaneval, mbpp, javascript: fraction of 10 samples correct, kept as is. MATH_prealgebra: already 0/1.

_FILE = re.compile(r"^(?P<task>.+?)(?:[-_](?P<split>train|test))?\.json$")
_SPLIT_ORDER = {"train": 0, None: 1, "test": 2}

ANCHOR_USD_PER_MILLION = 0.20
"""LiteLLM's Together AI price tier for 4.1B-8B models (``together-ai-4.1b-8b``: 2e-07 USD per input and per
output token in LiteLLM 1.110's bundled price map)."""
ANCHOR_PARAMETERS_B = 8.0
PARAMETERS_B: dict[str, float] = {
    "mistralai/Mistral-7B-v0.1": 7.24,
    "meta-math/MetaMath-Mistral-7B": 7.24,
    "itpossible/Chinese-Mistral-7B-v0.1": 7.24,
    "HuggingFaceH4/zephyr-7b-beta": 7.24,
    "cognitivecomputations/dolphin-2.6-mistral-7b": 7.24,
    "meta-llama/Meta-Llama-3-8B": 8.03,
    "cognitivecomputations/dolphin-2.9-llama3-8b": 8.03,
}
"""Parameter count (billions) of each model: Mistral-7B-based 7.24B, Llama-3-8B-based 8.03B."""

PRICE_ASSUMPTION = (
    "Prices are an assumption, not data: RouterDC logs no tokens and no costs. All 7 models are self-hosted "
    "7-8B models, so the price per token (the same for input and output) is taken proportional to parameter "
    "count, anchored at $0.20 per million tokens for an 8B model, which is LiteLLM's Together AI 4.1B-8B tier "
    "(litellm.model_cost['together-ai-4.1b-8b']: input_cost_per_token = output_cost_per_token = 2e-07). "
    "Mistral-7B-based models (7.24B parameters) cost 0.20 x 7.24/8 = $0.181 per million tokens; "
    "Llama-3-8B-based models (8.03B parameters) cost 0.20 x 8.03/8 = $0.20075 per million tokens."
)
LITELLM_PREFIX = "hosted_vllm/"
"""Self-hosted behind an OpenAI-compatible vLLM server, which LiteLLM reaches as ``hosted_vllm/<repo id>``."""


def _files(source: Path) -> list[tuple[str, Path]]:
    """(task, path) of every data file, train before unsplit before test within a task, tasks in TASKS order."""
    found = []
    for path in source.glob("*.json"):
        match = _FILE.match(path.name)
        if match is None or match["task"] not in TASKS:
            raise LogFormatError(f"{path}: file name does not name one of the tasks {list(TASKS)}")
        found.append((TASKS.index(match["task"]), _SPLIT_ORDER[match["split"]], match["task"], path))
    if not found:
        raise FileNotFoundError(f"no *.json data files in {source}; expected e.g. mmlu_train.json")
    found.sort(key=lambda item: item[:2])
    return [(task, path) for _, _, task, path in found]


def _price(model: str) -> float:
    """USD per token under :data:`PRICE_ASSUMPTION`."""
    if model not in PARAMETERS_B:
        raise LogFormatError(
            f"model {model!r} has no parameter count in routerdc.PARAMETERS_B, so no assumed price; add it there"
        )
    return float(f"{ANCHOR_USD_PER_MILLION * PARAMETERS_B[model] / ANCHOR_PARAMETERS_B / 1e6:.12g}")


def convert_routerdc(source_dir: Path) -> ConvertedDataset:
    """Convert every RouterDC ``split2_model7`` file into one routing log and an assumed-price pool.

    Splits are merged (eccos splits the logs itself). A question text that was already kept is skipped, first
    occurrence wins: this removes the (task, question) duplicates within and across splits, and the one ARC
    stem ("Which is NOT an example of a chemical change?") that appears in both ARC tasks, so no query text
    appears twice with two different outcomes. Ids are ``routerdc-<task>-<n>``.
    """
    source = require_dir(source_dir)
    kept: dict[str, tuple[str, dict[str, float]]] = {}
    duplicates = conflicting = 0
    for task, path in _files(source):
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LogFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(rows, list):
            raise LogFormatError(f"{path}: expected a JSON list of {{'question', 'scores'}} objects")
        for index, row in enumerate(rows):
            where = f"{path}[{index}]"
            question = row.get("question") if isinstance(row, dict) else None
            raw_scores = row.get("scores") if isinstance(row, dict) else None
            if not isinstance(question, str) or not question.strip() or not isinstance(raw_scores, dict):
                raise LogFormatError(f"{where}: expected a non-empty 'question' and a 'scores' object")
            scores = {}
            for model, value in raw_scores.items():
                score = unit_score(value, f"{where}: model {model!r}")
                if score is not None:
                    scores[model] = (1.0 if score > 0 else 0.0) if task in _MULTIPLE_CHOICE else score
            if not scores:
                continue
            if question in kept:
                duplicates += 1
                conflicting += kept[question][1] != scores
                continue
            kept[question] = (task, scores)
    if conflicting:
        logger.info("%s: %d repeated questions had different scores; kept the first", NAME, conflicting)

    numbers: Counter[str] = Counter()
    records = []
    for question, (task, scores) in kept.items():
        outcomes = {model: Outcome(score=score) for model, score in scores.items()}
        records.append(LogRecord(id=f"routerdc-{task}-{numbers[task]}", query=question, outcomes=outcomes, task=task))
        numbers[task] += 1
    logs = RoutingLogs(tuple(records), f"{NAME} ({source})")
    models = tuple(
        ModelSpec(
            name=model,
            litellm_model=LITELLM_PREFIX + model,
            input_cost_per_token=_price(model),
            output_cost_per_token=_price(model),
        )
        for model in logs.models
    )
    notes = "\n".join(
        [
            "RouterDC (Chen et al., NeurIPS 2024, arXiv 2409.19886) split2_model7 data, "
            "github.com/shuhao02/RouterDC commit 0e63989c5bf4363330b8a4616386e3f7f116d9f8. "
            "No license: do not redistribute.",
            f"All files merged: {len(records)} records; {duplicates} repeated question texts dropped "
            f"(first kept, train before test; {conflicting} of them had different scores). "
            f"Per task: {dict(numbers)}.",
            "Scores: MMLU, CMMLU, C-Eval and ARC are log-likelihood multiple choice where a score > 0 means "
            "correct, converted to 1.0/0.0; GSM8K, HumanEval, MBPP and JavaScript are the fraction of 10 "
            "samples correct, kept as is; MATH_prealgebra is 0/1. No responses, token counts or costs.",
            PRICE_ASSUMPTION,
        ]
    )
    return ConvertedDataset(NAME, logs, models, notes)
