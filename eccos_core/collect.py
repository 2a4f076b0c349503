"""Routing logs for your own pool: ask every model every question, grade each answer, append the outcome.

This is how the paper built its data set (QAServe): the same questions to every candidate model, graded. A
questions file is JSONL, one question a line::

    {"id": "q-17", "query": "What is 17 * 23?", "answer": "391", "task": "arithmetic"}

(``task`` optional; ``grader`` optional, to grade one question differently from the run's default; ``prompt``
optional, the text sent when it differs from the query the outcome is logged under, e.g. with the options of a
multiple-choice question written out). For every
(question, model) pair not yet in the output, :func:`acollect` sends the question through the core's dispatch
(LiteLLM, with retries, no fallback: the pair is about that model), grades the answer and appends one routing-log
line holding that model's outcome: score, input and output tokens, actual cost and latency. :func:`load_logs`
merges the lines of one id into one record.

Crash safety: each line is written with a single ``write`` and ``fsync``-ed before the next, so a killed run
leaves at most a cut-off last line; the next run cuts that line off (it was never finished) and skips every pair
already in the file. A write that fails (a full disk) is rolled back to the last complete line and stops the run.

Spend: with ``limit_usd`` each call first reserves an upper estimate of its cost (prompt tokens, plus
``max_tokens`` or the model's output limit, plus the judge's call); a call that could pass the limit is not
started, and the run ends once the calls in flight finish. Pass ``max_tokens`` for a tight estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eccos_core.dispatch import Dispatcher
from eccos_core.errors import CredentialError, DispatchError, EccosError, InputError, LogFormatError
from eccos_core.graders import Grader, make_grader
from eccos_core.logs import load_logs
from eccos_core.messages import check_encodable, count_input_tokens
from eccos_core.planner import QueryPlan
from eccos_core.pricing import ModelSpec, validate_pool

logger = logging.getLogger("eccos.collect")

DEFAULT_OUTPUT_RESERVE = 4096
"""Completion tokens reserved per call under ``limit_usd`` when neither ``max_tokens`` nor the model's
``max_output_tokens`` bounds them."""


class CollectError(EccosError, RuntimeError):
    """The collection cannot go on: the output is locked by another run, unwritable, or disagrees with the input."""


@dataclass(frozen=True)
class Question:
    """One question of a questions file."""

    id: str
    query: str
    answer: Any
    """Reference answer: a letter, a number, a string or a list of acceptable strings, as the grader needs."""
    task: str | None = None
    grader: str | None = None
    """Grader for this question, overriding the run's default."""
    prompt: str | None = None
    """Text sent to the model when it differs from ``query`` (the text the outcome is logged and routed under)."""


def load_questions(
    path: str | Path, graders: Mapping[str, Grader] | None = None, default: str = "exact"
) -> list[Question]:
    """Read a questions file, checking each reference answer against the grader that will score it.

    Args:
        path: JSONL (``.jsonl.gz`` too), one ``{"id", "query", "answer"[, "task"][, "grader"][, "prompt"]}`` object
            a line.
        graders: Grader name → grader, used to check each question's ``answer`` (skip checks with ``None``).
        default: Grader of the questions that name none.

    Raises:
        InputError: naming the file and line of a malformed question, a duplicate id, an unknown grader or an
            answer the grader cannot use.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"questions file {path} does not exist")
    questions: list[Question] = []
    seen: dict[str, int] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
            question = _parse_question(data, where)
            if question.id in seen:
                raise InputError(f"{where}: id {question.id!r} already used on line {seen[question.id]}")
            seen[question.id] = number
            name = question.grader or default
            if graders is not None:
                if name not in graders:
                    raise InputError(f"{where}: grader {name!r} is not available here (have {sorted(graders)})")
                try:
                    graders[name].check_answer(question.answer)
                except ValueError as exc:
                    raise InputError(f"{where}: {exc}") from None
            questions.append(question)
    if not questions:
        raise InputError(f"questions file {path} holds no questions")
    return questions


def _texts(value: Any) -> list[str]:
    """The strings in a question field (an answer may be a list of acceptable strings)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _parse_question(data: Any, where: str) -> Question:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with 'id', 'query' and 'answer'")
    missing = [key for key in ("id", "query", "answer") if key not in data]
    if missing:
        raise InputError(f"{where}: missing {missing} (a question needs 'id', 'query' and 'answer')")
    if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool) or not str(data["id"]).strip():
        raise InputError(f"{where}: 'id' must be a non-empty string or an integer")
    if not isinstance(data["query"], str) or not data["query"].strip():
        raise InputError(f"{where}: 'query' must be a non-empty string")
    for key in ("task", "grader", "prompt"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InputError(f"{where}: '{key}' must be a string when given")
    for key in ("id", "query", "task", "prompt", "answer"):  # refused before a call is paid for, not at the log
        for text in _texts(data.get(key)):
            check_encodable(text, f"{where}: '{key}'")
    return Question(
        str(data["id"]), data["query"], data["answer"], data.get("task"), data.get("grader"), data.get("prompt")
    )


# ----------------------------------------------------------------------------------------------- output
class LogAppender:
    """The output routing log, opened for appending one complete line at a time.

    Opening it takes an exclusive lock (a second run on the same file is refused), cuts off a last line left
    unfinished by a killed run, and reads which (id, model) pairs are already there.
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        """Open (creating) ``path``; see the class docstring."""
        self.path = Path(path)
        if self.path.suffix == ".gz":
            raise CollectError(f"{self.path}: collect appends line by line to plain JSONL; gzip the file afterwards")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.torn_bytes = 0
        """Bytes of an unfinished last line cut off when the file was opened."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._lock()
            self.torn_bytes = self._cut_torn_tail()
            self.done: dict[str, dict[str, Any]] = self._read_done()
            """Id → {"query", "models"} of what the file already holds."""
        except BaseException:
            os.close(self._fd)
            raise

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: a second run would go unnoticed
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(
                f"another eccos collect is writing {self.path}; wait for it or pick another --out"
            ) from None

    def _cut_torn_tail(self) -> int:
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return 0
        end = size
        while end > 0:
            start = max(0, end - 65536)
            chunk = os.pread(self._fd, end - start, start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        os.ftruncate(self._fd, end)
        logger.warning(
            "%s: cut off %d bytes of an unfinished last line (a run stopped mid-write); that pair is asked again",
            self.path,
            size - end,
        )
        return size - end

    def _read_done(self) -> dict[str, dict[str, Any]]:
        if os.fstat(self._fd).st_size == 0:
            return {}
        try:
            logs = load_logs(self.path)
        except LogFormatError as exc:
            if "holds no records" in str(exc):
                return {}
            raise CollectError(f"cannot resume: {exc}") from None
        return {r.id: {"query": r.query, "models": set(r.outcomes)} for r in logs}

    def pairs(self) -> set[tuple[str, str]]:
        """Every (id, model) the file holds an outcome for."""
        return {(key, model) for key, entry in self.done.items() for model in entry["models"]}

    def append(self, line: Mapping[str, Any], *, sync: bool | None = None) -> None:
        """Write one routing-log line whole; roll back to the last complete line on failure.

        One ``write`` per line: a killed process leaves every line it wrote complete (the kernel holds them);
        ``fsync`` (``sync``, default: the appender's ``fsync``) makes them survive a power cut too.
        """
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        offset = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self.fsync if sync is None else sync:
                os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, offset)
            raise CollectError(
                f"could not write to {self.path} ({exc.strerror or exc}); every line written before is intact: "
                "free space (or fix the file's permissions) and run again to resume"
            ) from exc

    async def afsync(self) -> None:
        """``fsync`` the lines written so far, off the event loop (a disk flush takes milliseconds)."""
        if not self.fsync:
            return
        try:
            await asyncio.to_thread(os.fsync, self._fd)
        except OSError as exc:
            raise CollectError(
                f"could not flush {self.path} to disk ({exc.strerror or exc}); free space and run again to resume"
            ) from exc

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- report
@dataclass
class ModelTally:
    """What happened to one model's pairs in a run."""

    total: int = 0
    """Questions in the file (pairs this model should end up with)."""
    already: int = 0
    """Pairs the output held before this run."""
    written: int = 0
    """Pairs answered, graded and written by this run."""
    failed: int = 0
    """Calls (or judge verdicts) that failed after LiteLLM's retries."""
    not_attempted: int = 0
    """Pairs not sent: the model was given up on, or the spend limit stopped the run."""
    cost: float = 0.0
    """USD this run paid this model (calls whose answer was lost to a failed grade included)."""
    consecutive_failures: int = 0
    gave_up: bool = False
    """True when the model failed ``max_consecutive_failures`` times in a row and was left out of the rest."""
    last_error: str = ""
    """The last failure, credentials redacted."""

    @property
    def missing(self) -> int:
        """Pairs still absent from the output after this run."""
        return self.total - self.already - self.written


@dataclass
class CollectReport:
    """The outcome of one :func:`acollect` run."""

    out: Path
    questions: int
    tallies: dict[str, ModelTally]
    judge_cost: float = 0.0
    """USD paid to the judge (0 without one)."""
    stopped_by_limit: bool = False
    """True when ``limit_usd`` kept calls from starting."""
    torn_bytes: int = 0
    """Bytes of an unfinished last line found (and cut off) when the run started."""
    wall_s: float = 0.0

    @property
    def lines_written(self) -> int:
        """Lines this run appended (one per finished pair)."""
        return sum(t.written for t in self.tallies.values())

    @property
    def spent_usd(self) -> float:
        """USD this run paid: model calls and judge calls."""
        return sum(t.cost for t in self.tallies.values()) + self.judge_cost

    @property
    def missing(self) -> int:
        """Pairs still absent from the output; 0 when the log is complete."""
        return sum(t.missing for t in self.tallies.values())

    @property
    def complete(self) -> bool:
        """Whether every (question, model) pair is in the output."""
        return self.missing == 0

    @property
    def failing(self) -> dict[str, ModelTally]:
        """Models with failures in this run, by name."""
        return {name: t for name, t in self.tallies.items() if t.failed or t.gave_up}

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "out": str(self.out),
            "questions": self.questions,
            "lines_written": self.lines_written,
            "missing": self.missing,
            "spent_usd": self.spent_usd,
            "judge_cost": self.judge_cost,
            "stopped_by_limit": self.stopped_by_limit,
            "torn_bytes": self.torn_bytes,
            "wall_s": self.wall_s,
            "models": {
                name: {k: v for k, v in vars(t).items() if k != "consecutive_failures"}
                for name, t in self.tallies.items()
            },
        }


class CollectProgress(Protocol):
    """Receives progress events (the CLI draws one bar per model from them)."""

    def start(self, tallies: Mapping[str, ModelTally]) -> None:
        """Called once, with every model's totals and what the output already holds."""

    def advance(self, model: str, tally: ModelTally) -> None:
        """Called after each pair of ``model`` finishes, written or failed."""


# ------------------------------------------------------------------------------------------------ spend
class _Budget:
    """Spend so far plus reservations for calls in flight; refuses a reservation that could pass the limit."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0
        self.refused = False

    def reserve(self, estimate: float) -> bool:
        if self.refused:
            return False
        if self.limit is not None and self.spent + self.reserved + estimate > self.limit:
            self.refused = True
            logger.info(
                "spend limit: $%.6f spent, $%.6f reserved in flight; a call estimated at $%.6f could pass $%.6f",
                self.spent,
                self.reserved,
                estimate,
                self.limit,
            )
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        self.reserved -= estimate
        self.spent += actual


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class _Run:
    pool: dict[str, ModelSpec]
    graders: Mapping[str, Grader]
    default_grader: str
    appender: LogAppender
    budget: _Budget
    options: dict[str, Any]
    max_tokens: int | None
    max_consecutive_failures: int
    progress: CollectProgress | None
    dispatcher: Dispatcher
    tallies: dict[str, ModelTally] = field(default_factory=dict)
    judge_cost: float = 0.0

    def estimate(self, question: Question, model: str, input_tokens: int) -> float:
        """Upper estimate of one pair's USD: the call, plus the judge's call when this question uses one."""
        spec = self.pool[model]
        out_cap = self.max_tokens or spec.max_output_tokens or DEFAULT_OUTPUT_RESERVE
        prompt = math.ceil(1.2 * input_tokens) + 16  # the provider's tokenizer may count a little more
        cost = prompt * spec.input_cost_per_token + out_cap * spec.output_cost_per_token
        grader = self.graders[question.grader or self.default_grader]
        judge = getattr(grader, "spec", None)
        if isinstance(judge, ModelSpec):
            judge_prompt = prompt + out_cap + 400 + len(str(question.answer))
            cost += judge_prompt * judge.input_cost_per_token + 256 * judge.output_cost_per_token
        return cost

    async def one(self, question: Question, model: str) -> None:
        tally = self.tallies[model]
        if tally.gave_up or self.budget.refused:
            tally.not_attempted += 1
            return
        messages = [{"role": "user", "content": question.prompt or question.query}]
        estimate = self.estimate(question, model, count_input_tokens(messages))
        if not self.budget.reserve(estimate):
            tally.not_attempted += 1
            return
        actual = 0.0
        try:
            try:
                reply = await self.dispatcher.asend(QueryPlan.direct(model), messages, **self.options)
            except (DispatchError, CredentialError) as exc:
                self.failed(model, exc, credential=isinstance(exc, CredentialError))
                return
            actual = reply.cost
            tally.cost += reply.cost
            grader = self.graders[question.grader or self.default_grader]
            try:
                grade = await grader.agrade(reply.text, question.answer, question.prompt or question.query)
            except Exception as exc:  # a custom grader's bug too: reported at the end, the run goes on
                lost = float(getattr(exc, "cost", 0.0))  # a judge that answered without a verdict was paid
                actual += lost
                self.judge_cost += lost
                self.failed(model, exc, credential=False)
                return
            actual += grade.cost
            self.judge_cost += grade.cost
            outcome = {
                "score": float(min(1.0, max(0.0, grade.score))),
                "output_tokens": reply.output_tokens,
                "input_tokens": reply.input_tokens,
                "cost": reply.cost,
                "latency_s": round(reply.latency_s, 4),
            }
            line: dict[str, Any] = {"id": question.id, "query": question.query}
            if question.task is not None:
                line["task"] = question.task
            line["outcomes"] = {model: outcome}
            self.appender.append(line, sync=False)  # whole line now; flushed to disk below, off the event loop
            await self.appender.afsync()
            tally.written += 1
            tally.consecutive_failures = 0
        finally:
            self.budget.settle(estimate, actual)
            if self.progress is not None:
                self.progress.advance(model, tally)

    def failed(self, model: str, exc: Exception, *, credential: bool) -> None:
        tally = self.tallies[model]
        tally.failed += 1
        tally.consecutive_failures += 1
        tally.last_error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("model %r failed (%s)", model, type(exc).__name__)
        if not tally.gave_up and (credential or tally.consecutive_failures >= self.max_consecutive_failures):
            tally.gave_up = True
            logger.warning(
                "model %r: giving up for this run after %d failures in a row; its remaining questions are left for "
                "the next run",
                model,
                tally.consecutive_failures,
            )


async def acollect(
    questions: Sequence[Question],
    pool: Sequence[ModelSpec],
    out: str | Path,
    grader: str | Grader = "exact",
    *,
    models: Sequence[str] | None = None,
    graders: Mapping[str, Grader] | None = None,
    concurrency: int = 8,
    max_tokens: int | None = None,
    limit_usd: float | None = None,
    num_retries: int = 2,
    max_consecutive_failures: int = 10,
    progress: CollectProgress | None = None,
    fsync: bool = True,
    **litellm_options: Any,
) -> CollectReport:
    """Ask every model every question not yet answered in ``out``, grade the answers, append routing-log lines.

    Args:
        questions: From :func:`load_questions`.
        pool: The models file's models (``litellm_params`` reach their providers).
        out: Routing log to append to (plain ``.jsonl``); created if absent, resumed if present.
        grader: Default grader (a name or an instance) for questions that name none.
        models: Pool names to collect (default: the whole pool; a judge may be left out this way).
        graders: Extra graders by name, for questions whose ``grader`` field names them.
        concurrency: Calls in flight at once.
        max_tokens: Cap on each answer's length (passed to the provider; tightens the spend estimate).
        limit_usd: Start no call that could take the run's spend past this many USD.
        num_retries: LiteLLM retries per call before the pair counts as failed.
        max_consecutive_failures: A model that fails this many times in a row is left out of the rest of the run.
        progress: Receives progress events.
        fsync: ``fsync`` every line (crash safety); turn off only for throwaway runs.
        **litellm_options: More options for every call (``temperature``, ``timeout``, ...).

    Raises:
        CollectError: Another run holds ``out``, ``out`` holds a different text for a question's id, or a write
            failed (everything written before it is intact).
        InputError: Bad arguments (unknown model, concurrency < 1, negative limit).
    """
    started = time.perf_counter()
    specs = validate_pool(pool)
    by_name = {m.name: m for m in specs}
    names = list(models) if models is not None else list(by_name)
    _check_arguments(names, by_name, concurrency, limit_usd, max_tokens)
    default, available = _set_up_graders(grader, graders, specs, questions)
    options: dict[str, Any] = {"num_retries": num_retries, **litellm_options}
    if max_tokens is not None:
        options["max_tokens"] = max_tokens

    with LogAppender(out, fsync=fsync) as appender:
        _check_resumable(appender, questions)
        run = _Run(
            pool=by_name,
            graders=available,
            default_grader=default.name,
            appender=appender,
            budget=_Budget(limit_usd),
            options=options,
            max_tokens=max_tokens,
            max_consecutive_failures=max_consecutive_failures,
            progress=progress,
            dispatcher=Dispatcher(specs),
        )
        todo = _plan_pairs(run, questions, names)
        if progress is not None:
            progress.start(run.tallies)
        await _run_workers(run, todo, concurrency)
        report = _report(run, len(questions), started)
    _log_failing(report)
    return report


def _check_arguments(
    names: list[str],
    by_name: Mapping[str, ModelSpec],
    concurrency: int,
    limit_usd: float | None,
    max_tokens: int | None,
) -> None:
    """Raises :class:`InputError` on an unknown or empty model list, or a bad concurrency, limit or max_tokens."""
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"models {unknown} are not in the models file (it has {list(by_name)})")
    if not names:
        raise InputError("no models to collect")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"concurrency must be a positive integer, got {concurrency!r}")
    if limit_usd is not None and not (limit_usd >= 0 and math.isfinite(limit_usd)):
        raise InputError(f"limit_usd must be a non-negative number of USD, got {limit_usd!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InputError(f"max_tokens must be a positive integer, got {max_tokens!r}")


def _set_up_graders(
    grader: str | Grader,
    graders: Mapping[str, Grader] | None,
    specs: Sequence[ModelSpec],
    questions: Sequence[Question],
) -> tuple[Grader, dict[str, Grader]]:
    """The default grader and every grader by name; raises :class:`InputError` if a question's is missing."""
    default = grader if isinstance(grader, Grader) else make_grader(grader, pool=specs)
    available = {default.name: default, **(graders or {})}
    for q in questions:
        if (q.grader or default.name) not in available:
            raise InputError(f"question {q.id!r} names grader {q.grader!r}, which is not set up for this run")
    return default, available


def _check_resumable(appender: LogAppender, questions: Sequence[Question]) -> None:
    """Raises :class:`CollectError` when the output holds a question's id with another query text."""
    for q in questions:
        held = appender.done.get(q.id)
        if held is not None and held["query"] != q.query:
            raise CollectError(
                f"{appender.path} holds id {q.id!r} with another query text than the questions file; "
                "give the changed question a new id, or write to a new --out"
            )


def _plan_pairs(run: _Run, questions: Sequence[Question], names: list[str]) -> list[tuple[Question, str]]:
    """Sets up every model's tally and returns the (question, model) pairs the output still lacks, logging both."""
    have = run.appender.pairs()
    for name in names:
        already = sum((q.id, name) in have for q in questions)
        run.tallies[name] = ModelTally(total=len(questions), already=already)
    todo = [(q, name) for q in questions for name in names if (q.id, name) not in have]
    logger.info(
        "collect: %d questions x %d models, %d pairs already in %s, %d to ask",
        len(questions),
        len(names),
        len(questions) * len(names) - len(todo),
        run.appender.path,
        len(todo),
    )
    return todo


async def _run_workers(run: _Run, todo: list[tuple[Question, str]], concurrency: int) -> None:
    """Asks every pair of ``todo`` through ``concurrency`` workers; on any failure stops them all and re-raises."""
    pending: Iterator[tuple[Question, str]] = iter(todo)

    async def worker() -> None:
        for question, name in pending:  # one shared iterator: each pair is taken by exactly one worker
            await run.one(question, name)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # a failed write, Ctrl-C: stop every worker before the file is closed
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _report(run: _Run, questions: int, started: float) -> CollectReport:
    """The run's report (its wall time counted from ``started``, a ``time.perf_counter()`` value)."""
    return CollectReport(
        out=run.appender.path,
        questions=questions,
        tallies=run.tallies,
        judge_cost=run.judge_cost,
        stopped_by_limit=run.budget.refused,
        torn_bytes=run.appender.torn_bytes,
        wall_s=time.perf_counter() - started,
    )


def _log_failing(report: CollectReport) -> None:
    """Logs a warning for every model with failures in the run."""
    for name, tally in report.failing.items():
        logger.warning(
            "model %r: %d failed calls%s; last error: %s",
            name,
            tally.failed,
            " (given up)" if tally.gave_up else "",
            tally.last_error,
        )


def collect(*args: Any, **kwargs: Any) -> CollectReport:
    """Blocking :func:`acollect` (runs its own event loop)."""
    return asyncio.run(acollect(*args, **kwargs))


__all__ = [
    "CollectError",
    "CollectProgress",
    "CollectReport",
    "LogAppender",
    "ModelTally",
    "Question",
    "acollect",
    "collect",
    "load_questions",
]
