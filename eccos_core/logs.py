"""Routing logs: past queries with each model's observed outcome.

The on-disk format is JSONL (optionally gzip-compressed), one query per line::

    {"id": "gsm8k-17", "query": "text of the prompt", "task": "gsm8k",
     "outcomes": {"<model name>": {"score": 1.0, "output_tokens": 212,
                                   "input_tokens": 85, "cost": 0.00015}}}

``score`` in [0, 1] is required for every listed model; the other outcome fields are optional. Several lines
may share an ``id``: each adds outcomes of more models to that query (how ``eccos collect`` appends results).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from eccos_core.errors import LogFormatError

logger = logging.getLogger(__name__)

_OPTIONAL_FIELDS = ("output_tokens", "input_tokens", "cost", "latency_s")


@dataclass(frozen=True)
class Outcome:
    """What one model did on one query."""

    score: float
    """Correctness in [0, 1] (1 = answered correctly)."""
    output_tokens: float | None = None
    """Tokens the model wrote, if logged."""
    input_tokens: float | None = None
    """Prompt tokens billed for the call, if logged."""
    cost: float | None = None
    """USD actually paid for the call, if logged."""
    latency_s: float | None = None
    """Seconds the call took, if logged (``eccos collect`` logs it)."""

    def to_dict(self) -> dict[str, float]:
        """JSON form, leaving out fields that were not logged."""
        out: dict[str, float] = {"score": self.score}
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class LogRecord:
    """One past query and the outcome of every model that answered it."""

    id: str
    query: str
    outcomes: dict[str, Outcome]
    task: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the record, as written to a routing-log line."""
        out: dict[str, Any] = {"id": self.id, "query": self.query}
        if self.task is not None:
            out["task"] = self.task
        out["outcomes"] = {name: o.to_dict() for name, o in self.outcomes.items()}
        return out


@dataclass(frozen=True)
class RoutingLogs(Sequence[LogRecord]):
    """An ordered collection of :class:`LogRecord` with matrix views over a list of models."""

    records: tuple[LogRecord, ...]
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[LogRecord]:
        return iter(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return RoutingLogs(self.records[index], self.source)
        return self.records[index]

    @property
    def models(self) -> list[str]:
        """Every model named in any record, in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self.records:
            for name in record.outcomes:
                seen.setdefault(name, None)
        return list(seen)

    @property
    def queries(self) -> list[str]:
        """The query texts, in record order."""
        return [r.query for r in self.records]

    @property
    def tasks(self) -> list[str | None]:
        """The task labels, in record order."""
        return [r.task for r in self.records]

    def subset(self, indices: Iterable[int]) -> RoutingLogs:
        """The records at ``indices``, in that order."""
        return RoutingLogs(tuple(self.records[i] for i in indices), self.source)

    def matrix(self, attribute: str, models: Sequence[str]) -> np.ndarray:
        """N×M float array of one outcome field (``score``, ``output_tokens``, ...); NaN where not logged."""
        if attribute not in ("score", *_OPTIONAL_FIELDS):
            raise ValueError(f"unknown outcome field {attribute!r}")
        out = np.full((len(self.records), len(models)), np.nan)
        column = {name: j for j, name in enumerate(models)}
        for i, record in enumerate(self.records):
            for name, outcome in record.outcomes.items():
                j = column.get(name)
                value = getattr(outcome, attribute)
                if j is not None and value is not None:
                    out[i, j] = value
        return out

    def scores(self, models: Sequence[str]) -> np.ndarray:
        """N×M observed scores; NaN where a model has no outcome for a query."""
        return self.matrix("score", models)


MAX_OUTCOME_VALUE = 1e9
"""Largest ``output_tokens``, ``input_tokens``, ``cost`` (USD) or ``latency_s`` one logged call may have. No call
writes a billion tokens or costs a billion dollars, and beyond this a value overflows the cost matrix (``1e308``
times a price is ``inf``), so a larger one is a corrupt log, not data."""


def _number(value: Any, what: str, where: str, *, unit_interval: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LogFormatError(f"{where}: {what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise LogFormatError(f"{where}: {what} is too large for a float; give a plausible number") from None
    if math.isnan(number) or math.isinf(number):
        raise LogFormatError(f"{where}: {what} is {number}; drop the outcome or give a finite number")
    if number > MAX_OUTCOME_VALUE:
        raise LogFormatError(
            f"{where}: {what} is {number:g}, more than {MAX_OUTCOME_VALUE:g}; no single call has that many tokens, "
            "dollars or seconds, so the log is corrupt there: fix or drop the outcome"
        )
    if unit_interval and not 0.0 <= number <= 1.0:
        raise LogFormatError(f"{where}: {what} must lie in [0, 1], got {number}")
    if number < 0:
        raise LogFormatError(f"{where}: {what} must not be negative, got {number}")
    return number


def parse_record(data: Any, where: str) -> LogRecord:
    """Validate one decoded JSON object as a :class:`LogRecord`; ``where`` names it in errors."""
    if not isinstance(data, dict):
        raise LogFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
    _duplicates(data, where, "fields")
    for key in ("id", "query", "outcomes"):
        if key not in data:
            raise LogFormatError(f"{where}: missing required field {key!r}")
    query = data["query"]
    if not isinstance(query, str) or not query.strip():
        raise LogFormatError(f"{where}: 'query' must be a non-empty string")
    task = data.get("task")
    if task is not None and not isinstance(task, str):
        raise LogFormatError(f"{where}: 'task' must be a string when given")
    raw_outcomes = data["outcomes"]
    if not isinstance(raw_outcomes, dict) or not raw_outcomes:
        raise LogFormatError(f"{where}: 'outcomes' must be a non-empty object of model name -> outcome")
    _duplicates(raw_outcomes, where, "'outcomes' lists models")
    outcomes: dict[str, Outcome] = {}
    for name, raw in raw_outcomes.items():
        at = f"{where}: outcome of model {name!r}"
        if not isinstance(raw, dict):
            raise LogFormatError(f"{at} must be an object with at least 'score'")
        _duplicates(raw, at, "has fields")
        if "score" not in raw:
            raise LogFormatError(f"{at} lacks the required 'score' (a number in [0, 1])")
        optional = {key: _number(raw[key], repr(key), at) for key in _OPTIONAL_FIELDS if raw.get(key) is not None}
        outcomes[name] = Outcome(score=_number(raw["score"], "'score'", at, unit_interval=True), **optional)
    return LogRecord(id=str(data["id"]), query=query, outcomes=outcomes, task=task)


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a log file, decoded line by line so that an error can name its line.

    Raises:
        LogFormatError: A line that is not UTF-8, or gzip data that is truncated or corrupt (a file named
            ``.gz`` that is not gzip), naming the file and the line where reading stopped.
    """
    number = 0
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if not raw.endswith(b"\n"):  # a last line torn inside a character: load_logs skips it
                        yield number, raw.decode("utf-8", "replace")
                        continue
                    raise LogFormatError(
                        f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of "
                        "the line); re-save the file as UTF-8"
                    ) from None
                yield number, text
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            read = f"lines 1-{number} were read" if number else "not one line could be read"
            raise LogFormatError(
                f"{path}:{number + 1}: the gzip data is truncated or corrupt ({exc}); {read}. Write the file again "
                "(or give a plain .jsonl a name without .gz)"
            ) from None


class _JSONObject(dict):
    """A decoded JSON object that remembers the keys it held twice (plain ``json`` keeps the last silently)."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JSONObject:
        obj = cls(pairs)
        if len(obj) < len(pairs):
            keys = [key for key, _ in pairs]
            obj.duplicates = tuple(dict.fromkeys(key for key in keys if keys.count(key) > 1))
        return obj


def _duplicates(obj: Any, where: str, what: str) -> None:
    if getattr(obj, "duplicates", ()):
        raise LogFormatError(
            f"{where}: {what} {list(obj.duplicates)} given twice in one JSON object (JSON would keep only the last, "
            "silently); keep one of them"
        )


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        # mtime=0 keeps the bytes of a rewritten file identical when its records are
        raw = gzip.GzipFile(path, mode + "b", mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def load_logs(path: str | Path) -> RoutingLogs:
    """Read a routing-log JSONL file (``.jsonl`` or ``.jsonl.gz``).

    Lines that share an ``id`` are one query: each adds the outcomes of more models (``eccos collect`` appends
    one line per finished (query, model)). A last line cut off before its newline, as a writer killed mid-line
    leaves it, is skipped with a warning; any other malformed line is an error.

    Raises:
        LogFormatError: naming the file and line of the first malformed record, of an id whose lines disagree
            on the query text or task, or of a model's second outcome for one id.
    """
    path = Path(path)
    if not path.is_file():
        raise LogFormatError(f"routing log {path} does not exist")
    merged: dict[str, dict[str, Any]] = {}
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line, object_pairs_hook=_JSONObject.from_pairs)
        except json.JSONDecodeError as exc:
            if not line.endswith("\n"):
                logger.warning(
                    "%s: skipped the last line, cut off before its newline (a writer stopped mid-line)", where
                )
                break
            raise LogFormatError(f"{where}: not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # a number with thousands of digits, nesting too deep
            raise LogFormatError(
                f"{where}: not a usable JSON record ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        _merge(merged, parse_record(data, where), number, where)
    if not merged:
        raise LogFormatError(f"routing log {path} holds no records")
    records = tuple(
        LogRecord(id=key, query=entry["query"], outcomes=entry["outcomes"], task=entry["task"])
        for key, entry in merged.items()
    )
    return RoutingLogs(records, str(path))


def _merge(merged: dict[str, dict[str, Any]], record: LogRecord, number: int, where: str) -> None:
    """Add one line's record to the records read so far, joining it to earlier lines of the same id."""
    entry = merged.get(record.id)
    if entry is None:
        merged[record.id] = {
            "query": record.query,
            "task": record.task,
            "outcomes": dict(record.outcomes),
            "line": number,
            "lines": dict.fromkeys(record.outcomes, number),
        }
        return
    first = entry["line"]
    if record.query != entry["query"]:
        raise LogFormatError(
            f"{where}: id {record.id!r} has another query text than on line {first}; one id names one query, "
            "so give this query its own id"
        )
    if record.task is not None:
        if entry["task"] is not None and entry["task"] != record.task:
            raise LogFormatError(
                f"{where}: id {record.id!r} has task {record.task!r} but {entry['task']!r} on line {first}"
            )
        entry["task"] = record.task
    for name, outcome in record.outcomes.items():
        if name in entry["lines"]:
            raise LogFormatError(
                f"{where}: model {name!r} already has an outcome for id {record.id!r} on line "
                f"{entry['lines'][name]}; keep one of them"
            )
        entry["outcomes"][name] = outcome
        entry["lines"][name] = number


def write_logs(logs: Iterable[LogRecord], path: str | Path) -> Path:
    """Write records as routing-log JSONL (gzip-compressed when ``path`` ends in ``.gz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "w") as handle:
        for record in logs:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return path


def split_logs(logs: RoutingLogs, test_frac: float = 0.2, seed: int = 0) -> tuple[RoutingLogs, RoutingLogs]:
    """Deterministic train/test split, stratified by task so every task appears on both sides.

    The same logs, fraction and seed always give the same split.
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must lie strictly between 0 and 1, got {test_frac}")
    rng = np.random.default_rng(seed)
    by_task: dict[str | None, list[int]] = {}
    for i, record in enumerate(logs):
        by_task.setdefault(record.task, []).append(i)
    test: list[int] = []
    for task in sorted(by_task, key=lambda t: "" if t is None else t):
        members = np.array(by_task[task])
        rng.shuffle(members)
        test.extend(members[: round(test_frac * len(members))].tolist())
    test_set = set(test)
    train = [i for i in range(len(logs)) if i not in test_set]
    return logs.subset(train), logs.subset(sorted(test))
