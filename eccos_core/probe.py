"""The probe: a few hundred graded questions that tell a fitted router how a new model compares with the ones it knows.

The probe set ships in the package (:data:`PROBE_SET`): questions of LLMRouter's query data (MIT, the same
source as the bundled logs) that the shipped default router was never fitted on (its held-out split, and query
data the logs lack), on the 11 tasks a rule can grade: multiple choice (MMLU, GPQA, ARC-Challenge,
CommonsenseQA, OpenBookQA, logic grids; ``mcq``), numbers (GSM8K, MGSM, MATH with a numeric answer;
``numeric``) and open answers (Natural Questions, TriviaQA; token ``f1``). Code and CommonGen need a sandbox or a
judge and are left out. The file is in stratified order: its first ``n`` questions hold about ``n / 11`` of each
task, so any ``n`` is a stratified probe.

Each question is routed and logged under its bare text (what the bundled logs hold, so the predictor's features
for it are the ones it was built for) and sent with its options written out (``Question.prompt``).

:func:`aprobe` asks a model the first ``n`` through :func:`~eccos_core.collect.acollect` (resumable, with a spend
limit), and :meth:`Router.onboard <eccos_core.lifecycle.RouterLifecycle.onboard>` fits the model from the log.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import json
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eccos_core.collect import CollectError, CollectReport, Question, acollect, load_questions
from eccos_core.errors import InputError
from eccos_core.graders import Grader, make_grader
from eccos_core.logs import RoutingLogs, load_logs
from eccos_core.pricing import ModelSpec
from eccos_core.priors import MIN_PROBE

logger = logging.getLogger("eccos.probe")

PROBE_SET = Path(__file__).resolve().parent / "data" / "probe-questions.jsonl.gz"
"""The shipped probe questions, in stratified order (:func:`build_probe_set` writes them)."""

DEFAULT_PROBE = 200
"""Questions a probe asks unless told otherwise."""

PROBE_GRADERS = ("mcq", "numeric", "f1")
"""The graders the probe set's questions name."""

_MCQ_TASKS = ("mmlu", "gpqa", "arc_challenge", "commonsense_qa", "openbook_qa", "agentverse-logicgrid")
_NUMERIC_TASKS = ("gsm8k", "agentverse-mgsm", "math")
_OPEN_TASKS = ("natural_qa", "trivia_qa")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def probe_questions(n: int = DEFAULT_PROBE) -> list[Question]:
    """The first ``n`` questions of the shipped probe set (a stratified sample of its tasks).

    Raises:
        InputError: ``n`` is not a positive integer, or larger than the set.
    """
    questions = load_questions(PROBE_SET, probe_graders())
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(questions):
        raise InputError(f"a probe asks between 1 and {len(questions)} questions, got n={n!r}")
    return questions[:n]


def probe_graders() -> dict[str, Grader]:
    """The graders of the probe set's questions, by name."""
    return {name: make_grader(name) for name in PROBE_GRADERS}


async def aprobe(spec: ModelSpec, out: str | Path, n: int = DEFAULT_PROBE, **collect_options: Any) -> CollectReport:
    """Ask ``spec`` the first ``n`` probe questions not yet answered in ``out`` and append the graded outcomes.

    ``collect_options`` go to :func:`~eccos_core.collect.acollect` (``limit_usd``, ``concurrency``,
    ``max_tokens``, ``num_retries``, LiteLLM options).
    """
    questions = probe_questions(n)
    return await acollect(questions, [spec], out, "mcq", graders=probe_graders(), **collect_options)


async def probe_outcomes(
    spec: ModelSpec, n: int = DEFAULT_PROBE, log: str | Path | None = None, **collect_options: Any
) -> RoutingLogs:
    """The graded probe answers of ``spec``: :func:`aprobe` into ``log`` (a temporary file when ``None``), read back.

    Raises:
        CollectError: Fewer than 10 answers could be had (the last provider error is named).
    """
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eccos-probe-"))) / "probe.jsonl"
        report = await aprobe(spec, log, n, **collect_options)
        tally = report.tallies[spec.name]
        if tally.already + tally.written < MIN_PROBE:
            raise CollectError(
                f"the probe of {spec.name!r} has {tally.already + tally.written} graded answers of {n}, fewer than "
                f"{MIN_PROBE}: {tally.last_error or 'raise limit_usd'}"
            )
        if not report.complete:
            logger.warning(
                "the probe of %r is missing %d of %d answers; joining it from the %d it has",
                spec.name,
                report.missing,
                n,
                tally.already + tally.written,
            )
        return load_logs(log)


# ------------------------------------------------------------------------------------------------ building
def build_probe_set(source: str | Path, out: str | Path = PROBE_SET, *, seed: int = 0) -> Path:
    """Write the probe set from LLMRouter's ``query_data`` (in ``source``) and the bundled logs.

    Keeps the gradable questions the shipped default router was not fitted on, and orders them so that every
    prefix is stratified by task (each task's questions shuffled with ``seed``, then dealt round-robin).
    """
    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs

    logs = bundled_logs()
    fitted = set(split_logs(logs, test_frac=0.2, seed=0)[0].queries)  # the shipped router's training split
    by_task: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for name in ("default_query_train.jsonl", "default_query_test.jsonl"):
        with (Path(source) / "query_data" / name).open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        for record in records:
            question = _probe_question(record)
            if question is None or record["query"] in fitted or record["query"] in seen:
                continue
            seen.add(record["query"])
            by_task.setdefault(record["task_name"], []).append(question)
    rng = np.random.default_rng(seed)
    decks = []
    for task in sorted(by_task):
        deck = by_task[task]
        decks.append([deck[i] for i in rng.permutation(len(deck))])
    dealt = [deck[i] for i in range(max(map(len, decks))) for deck in decks if i < len(deck)]
    out = Path(out)
    with gzip.open(out, "wt", encoding="utf-8") as handle:
        for number, question in enumerate(dealt):
            handle.write(json.dumps({"id": f"probe-{number:04d}", **question}, ensure_ascii=False) + "\n")
    return out


def _probe_question(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """One query-data record as a probe question, or ``None`` where no rule grader can check it."""
    task, query, truth = record["task_name"], record["query"], record["ground_truth"]
    base = {"query": query, "task": task}
    if task in _MCQ_TASKS:
        options = _options(record.get("choices"))
        if not options or not isinstance(truth, str) or truth not in options or len(options) > 10:
            return None
        letters = {label: chr(ord("A") + i) for i, label in enumerate(options)}  # ARC labels some options 1-4
        truth = letters[truth]
        listed = "\n".join(f"{letters[label]}. {text.strip()}" for label, text in options.items())
        prompt = f"{query.rstrip()}\n\n{listed}\n\nAnswer with the letter of the correct option."
        return {**base, "prompt": prompt, "answer": truth, "grader": "mcq"}
    if task in _NUMERIC_TASKS:
        answer = _final_number(str(truth))
        if answer is None:
            return None
        ask = "" if "boxed" in query else "\n\nPut the final answer in \\boxed{}."
        return {**base, "prompt": query.rstrip() + ask, "answer": answer, "grader": "numeric"}
    if task in _OPEN_TASKS and isinstance(truth, str) and truth.strip():
        return {**base, "prompt": query.rstrip() + "\n\nAnswer in a few words.", "answer": truth, "grader": "f1"}
    return None


def _options(choices: Any) -> dict[str, str] | None:
    """Letter → option text from query data's ``choices`` (a list, or a dict of labels and texts, as a string)."""
    if isinstance(choices, str):
        try:
            choices = ast.literal_eval(choices)
        except (ValueError, SyntaxError):
            return None
    if isinstance(choices, list) and all(isinstance(c, str) for c in choices):
        return {chr(ord("A") + i): c for i, c in enumerate(choices)}
    if isinstance(choices, dict):
        labels = choices.get("label") or choices.get("labels")
        texts = choices.get("text")
        if isinstance(labels, Sequence) and isinstance(texts, Sequence) and len(labels) == len(texts):
            return {str(label): str(text) for label, text in zip(labels, texts, strict=True)}
    return None


def _final_number(truth: str) -> str | None:
    r"""The reference number of a GSM8K (``#### 42``), MGSM (``42``) or MATH (``\boxed{42}``) answer."""
    if "####" in truth:
        truth = truth.rsplit("####", 1)[1]
    elif "\\boxed{" in truth:
        start = truth.rfind("\\boxed{") + len("\\boxed{")
        depth, end = 1, start
        while end < len(truth) and depth:
            depth += {"{": 1, "}": -1}.get(truth[end], 0)
            end += 1
        truth = truth[start : end - 1]
    text = truth.replace(",", "").replace("$", "").strip()
    return text if _NUMBER.fullmatch(text) else None


__all__ = [
    "DEFAULT_PROBE",
    "PROBE_GRADERS",
    "PROBE_SET",
    "aprobe",
    "build_probe_set",
    "probe_outcomes",
    "probe_questions",
]
