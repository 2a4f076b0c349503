"""RouterBench's ARC-Challenge, MBPP and Winogrande splits, as cut by RouterDC: 11 LLMs with costs.

Source layout (``shared/data/routerbench-routerdc-subset/``): ``{arc_challenge,mbpp,winograde}_{train,test}.csv``,
one row per query in wide form: ``prompt``, ``eval_name``, and per model ``<model>`` (correctness 0/1),
``<model>|model_response`` and ``<model>|total_cost`` (USD). Prompts and responses are the string form of a
Python list of strings.

This is the only source with real per-call costs and response texts, so it gives every outcome
``output_tokens`` (counted from the response), ``input_tokens`` and ``cost``. Its per-token prices are not
published with the data; they are backed out from the logged costs by non-negative least squares.

No license: convert it for local benchmarks only, never into the package.
"""

from __future__ import annotations

import ast
import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from eccos_core.datasets.base import ConvertedDataset, require_dir, require_file, unit_score
from eccos_core.errors import LogFormatError, PricingError
from eccos_core.logs import LogRecord, Outcome, RoutingLogs
from eccos_core.pricing import ModelSpec

logger = logging.getLogger(__name__)

NAME = "routerbench-routerdc-subset"
_FILES = tuple(f"{task}_{split}.csv" for task in ("arc_challenge", "mbpp", "winograde") for split in ("train", "test"))
_META_COLUMNS = frozenset({"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"})
_RESPONSE = "|model_response"
_COST = "|total_cost"

LITELLM_IDS: dict[str, str] = {
    "WizardLM/WizardLM-13B-V1.2": "together_ai/WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1": "bedrock/anthropic.claude-instant-v1",
    "claude-v1": "bedrock/anthropic.claude-v1",
    "claude-v2": "bedrock/anthropic.claude-v2",
    "gpt-3.5-turbo-1106": "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview": "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat": "together_ai/togethercomputer/CodeLlama-34b-Instruct",
    "meta/llama-2-70b-chat": "together_ai/togethercomputer/llama-2-70b-chat",
    "mistralai/mistral-7b-chat": "together_ai/mistralai/Mistral-7B-Instruct-v0.1",
    "mistralai/mixtral-8x7b-chat": "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1",
    "zero-one-ai/Yi-34B-Chat": "together_ai/zero-one-ai/Yi-34B-Chat",
}
"""RouterBench model name → LiteLLM id.

The ids are LiteLLM price-map keys where one exists (OpenAI, Bedrock Claude v1/instant, Together's Mixtral and
CodeLlama); the rest keep RouterBench's model under the provider whose list prices the logged costs match
(Together AI for the open models: the fitted prices equal its 2023 tiers, $0.2-0.9 per million tokens).
"""

# LiteLLM fetches the tokenizer of these families from Hugging Face on first use (a long stall offline),
# while counts for every other id come from tokenizers it bundles.
_DOWNLOADED_TOKENIZER = re.compile(r"llama-?[23]|replicate|deepseek|command-r", re.IGNORECASE)


@dataclass(frozen=True)
class _Row:
    where: str
    sample_id: str
    task: str
    prompt: str
    scores: dict[str, float]
    responses: dict[str, str]
    costs: dict[str, float | None]


def _as_text(raw: str, where: str) -> str:
    """Join RouterBench's stringified list of strings into one text."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise LogFormatError(f"{where}: not the string form of a Python list") from None
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise LogFormatError(f"{where}: expected a list of strings, got {type(value).__name__}")
    return "\n".join(str(part) for part in value)


def _cost(raw: str, where: str) -> float | None:
    if not raw.strip():
        return None
    try:
        cost = float(raw)
    except ValueError:
        raise LogFormatError(f"{where}: cost {raw!r} is not a number") from None
    if cost != cost:  # NaN: not logged
        return None
    if cost < 0:
        raise LogFormatError(f"{where}: cost {cost} is negative")
    return cost


def _read_rows(source: Path) -> tuple[list[str], list[_Row]]:
    """Model names, and every row of every file in train-then-test order per task."""
    models: list[str] = []
    rows: list[_Row] = []
    for file_name in _FILES:
        path = require_file(source / file_name)
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            columns = [c for c in header if c not in _META_COLUMNS and "|" not in c]
            missing = [c for m in columns for c in (m + _RESPONSE, m + _COST) if c not in header]
            missing += [c for c in ("sample_id", "prompt", "eval_name") if c not in header]
            if not columns or missing:
                raise LogFormatError(
                    f"{path}: expected 'sample_id', 'prompt', 'eval_name' and per model '<model>', "
                    f"'<model>{_RESPONSE}', '<model>{_COST}' columns (missing: {missing or 'every model'})"
                )
            if not models:
                models.extend(columns)
            elif sorted(columns) != sorted(models):
                raise LogFormatError(f"{path}: models {columns} differ from the other files' {models}")
            for line, raw in enumerate(reader, start=2):
                where = f"{path}:{line}"
                scores = {m: unit_score(raw[m], f"{where} column {m!r}") for m in models}
                rows.append(
                    _Row(
                        where=where,
                        sample_id=raw["sample_id"],
                        task=raw["eval_name"],
                        prompt=_as_text(raw["prompt"], f"{where} column 'prompt'"),
                        scores={m: s for m, s in scores.items() if s is not None},
                        responses={m: raw[m + _RESPONSE] for m in models},
                        costs={m: _cost(raw[m + _COST], f"{where} column {m + _COST!r}") for m in models},
                    )
                )
    return models, rows


def _tokenizer(litellm_model: str) -> str:
    """Model id to count tokens with: the model's own where LiteLLM knows it offline, else LiteLLM's default.

    An empty string makes ``litellm.token_counter`` use its default encoding (cl100k_base). The near-perfect
    price fit shows RouterBench computed its costs from counts of that encoding for every model anyway.
    """
    import litellm

    if _DOWNLOADED_TOKENIZER.search(litellm_model):
        return ""
    try:
        litellm.get_model_info(litellm_model)
    except Exception:  # LiteLLM raises several exception types for an unmapped model
        return ""
    return litellm_model


def _fit_prices(
    name: str, input_tokens: np.ndarray, output_tokens: np.ndarray, costs: np.ndarray
) -> tuple[float, float, float]:
    """Per-token input and output price that best explain the logged costs, and the fit's R².

    RouterBench bills every call at list price, so cost = in_price·input_tokens + out_price·output_tokens up to
    tokenizer differences; NNLS keeps both prices non-negative.
    """
    design = np.column_stack([input_tokens, output_tokens]).astype(float)
    (in_price, out_price), _ = nnls(design, costs)
    if in_price <= 0 and out_price <= 0:
        raise PricingError(
            f"model {name!r}: fitting its logged costs gave a zero price for both input and output tokens; "
            f"set input_cost_per_token/output_cost_per_token by hand"
        )
    residual = costs - design @ np.array([in_price, out_price])
    total = costs - costs.mean()
    r2 = 1.0 - float(residual @ residual) / float(total @ total) if float(total @ total) > 0 else 1.0
    return float(f"{in_price:.6g}"), float(f"{out_price:.6g}"), r2


def convert_routerbench(source_dir: Path) -> ConvertedDataset:
    """Convert the six RouterBench CSVs into routing logs with tokens and costs, and a pool with fitted prices.

    Rows are read train before test, task by task. A row on which most models have no correctness is dropped:
    these are 14 ARC rows whose prompt list holds the same prompt twice and whose costs are doubled, each a
    broken copy of a sample_id that has a good row too. A model with no correctness on a kept row is left out
    of that record. Duplicates are then removed, first by ``sample_id`` and then by prompt text, keeping the
    first. Ids are ``routerbench-<sample_id>``.
    """
    import litellm

    source = require_dir(source_dir)
    models, rows = _read_rows(source)
    litellm_ids = _litellm_ids(models)
    tokenizers = {m: _tokenizer(litellm_ids[m]) for m in models}

    def count(text: str, tokenizer: str) -> int:
        return int(litellm.token_counter(model=tokenizer, text=text))

    records, dropped = _records(rows, models, tokenizers, count)
    if not records:
        raise LogFormatError(f"{source}: no usable rows")
    logs = RoutingLogs(tuple(records), f"{NAME} ({source})")
    specs, fit_lines = _fit_pool(logs, models, litellm_ids, tokenizers, source)
    return ConvertedDataset(NAME, logs, tuple(specs), _notes(len(records), dropped, fit_lines))


def _litellm_ids(models: list[str]) -> dict[str, str]:
    """Each model's LiteLLM id (its own name, with a warning, where none is known)."""
    litellm_ids = {}
    for model in models:
        if model not in LITELLM_IDS:
            logger.warning("%s: model %r has no known LiteLLM id; using its name", NAME, model)
        litellm_ids[model] = LITELLM_IDS.get(model, model)
    return litellm_ids


@dataclass
class _Dropped:
    """What :func:`_records` left out."""

    broken: int = 0
    """Rows on which most models have no correctness."""
    by_id: int = 0
    """Rows with a sample_id seen before."""
    by_prompt: int = 0
    """Rows with a prompt text seen before."""
    omitted: int = 0
    """Single outcomes without correctness on kept rows."""


def _records(
    rows: list[_Row], models: list[str], tokenizers: dict[str, str], count: Callable[[str, str], int]
) -> tuple[list[LogRecord], _Dropped]:
    """One routing-log record per kept row (see :func:`convert_routerbench`), and the tally of what was dropped."""
    prompt_tokens: dict[tuple[str, str], int] = {}
    records: list[LogRecord] = []
    seen_ids: set[str] = set()
    seen_prompts: set[str] = set()
    dropped = _Dropped()
    for row in rows:
        if len(row.scores) * 2 <= len(models):
            dropped.broken += 1
            logger.debug(
                "%s: dropped, %d of %d models have no correctness",
                row.where,
                len(models) - len(row.scores),
                len(models),
            )
            continue
        if row.sample_id in seen_ids:
            dropped.by_id += 1
            continue
        if row.prompt in seen_prompts:
            dropped.by_prompt += 1
            continue
        seen_ids.add(row.sample_id)
        seen_prompts.add(row.prompt)
        dropped.omitted += len(models) - len(row.scores)
        outcomes = {}
        for model, score in row.scores.items():
            tokenizer = tokenizers[model]
            key = (tokenizer, row.prompt)
            if key not in prompt_tokens:
                prompt_tokens[key] = count(row.prompt, tokenizer)
            response = _as_text(row.responses[model], f"{row.where} column {model + _RESPONSE!r}")
            outcomes[model] = Outcome(
                score=score,
                output_tokens=count(response, tokenizer),
                input_tokens=prompt_tokens[key],
                cost=row.costs[model],
            )
        records.append(LogRecord(id=f"routerbench-{row.sample_id}", query=row.prompt, outcomes=outcomes, task=row.task))
    return records, dropped


def _fit_pool(
    logs: RoutingLogs, models: list[str], litellm_ids: dict[str, str], tokenizers: dict[str, str], source: Path
) -> tuple[list[ModelSpec], list[str]]:
    """The pool with prices fitted to the logged costs, and one note line per model on its fit."""
    specs = []
    fit_lines = []
    for model in models:
        input_tokens = logs.matrix("input_tokens", [model])[:, 0]
        output_tokens = logs.matrix("output_tokens", [model])[:, 0]
        costs = logs.matrix("cost", [model])[:, 0]
        mask = ~(np.isnan(input_tokens) | np.isnan(output_tokens) | np.isnan(costs))
        if not mask.any():
            raise PricingError(f"model {model!r} has no logged cost in {source}, so no price can be fitted")
        in_price, out_price, r2 = _fit_prices(model, input_tokens[mask], output_tokens[mask], costs[mask])
        litellm_model = litellm_ids[model]
        specs.append(
            ModelSpec(
                name=model,
                litellm_model=litellm_model,
                input_cost_per_token=in_price,
                output_cost_per_token=out_price,
            )
        )
        fit_lines.append(
            f"  {model}: ${in_price * 1e6:.4g} in / ${out_price * 1e6:.4g} out per million tokens, "
            f"R²={r2:.5f} over {int(mask.sum())} calls; tokens counted as "
            f"{tokenizers[model] or 'LiteLLM default (cl100k_base)'}"
        )
        logger.info("%s: fitted %s prices with R²=%.5f", NAME, model, r2)
    return specs, fit_lines


def _notes(records: int, dropped: _Dropped, fit_lines: list[str]) -> str:
    """The converted data set's notes: source, license, what was dropped, how tokens and prices were found."""
    return "\n".join(
        [
            "RouterBench (Hu et al., arXiv 2403.12031; withmartian/routerbench) ARC-Challenge, MBPP and "
            "Winogrande splits as committed by RouterDC (github.com/shuhao02/RouterDC datasets/routerbench_zs/, "
            "commit 0e63989c5bf4363330b8a4616386e3f7f116d9f8). No license: do not redistribute.",
            f"Train and test merged: {records} records. Dropped {dropped.broken} rows on which most models "
            f"have no correctness (RouterBench rows with the prompt repeated twice and doubled costs), then "
            f"{dropped.by_id} duplicate sample_ids and {dropped.by_prompt} duplicate prompt texts (first kept). "
            f"{dropped.omitted} single outcomes without correctness left out.",
            "Query = prompt list joined with newlines; output_tokens = litellm.token_counter of the response "
            "(list joined with newlines), input_tokens = the same of the prompt; cost = |total_cost (USD).",
            "Prices are backed out from RouterBench's logged costs, not published: per model, non-negative "
            "least squares of total_cost on (input_tokens, output_tokens), rounded to 6 significant digits:",
            *fit_lines,
        ]
    )
