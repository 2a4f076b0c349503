"""``eccos collect``: every question to every model, graded, appended as routing logs that survive a kill.

Two servers on 127.0.0.1 answer: the shared loopback provider (``answer from <model>``; ``flaky`` and ``broken``
models fail), and a quiz server started here whose models answer multiple-choice questions right or wrong, and
whose ``judge`` model grades answers, so graders have something to score.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eccos_core.cli import main
from eccos_core.collect import CollectError, LogAppender, Question, collect, load_questions
from eccos_core.errors import InputError, LogFormatError
from eccos_core.graders import make_grader
from eccos_core.logs import load_logs
from eccos_core.pricing import ModelSpec

LETTERS = "ABCD"


class Quiz:
    """An OpenAI-compatible server whose models know (or not) the answers to numbered quiz questions.

    Served model names pick the behaviour: ``right*`` answers "The answer is (X)." with the true letter,
    ``wrong*`` with a wrong one, ``judge*`` grades an answer against the reference in its prompt (CORRECT /
    INCORRECT). Every reply waits ``delay_s`` first, so a run can be killed while calls are in flight.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[str] = []
        self.lock = threading.Lock()
        quiz = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                model = str(body.get("model", ""))
                prompt = str(body["messages"][-1]["content"])
                with quiz.lock:
                    quiz.requests.append(model)
                time.sleep(quiz.delay_s)
                reply = quiz.reply(model, prompt)
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(reply.split())}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                data = json.dumps(
                    {
                        "id": "chatcmpl-quiz",
                        "object": "chat.completion",
                        "created": 1700000000,
                        "model": model,
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                        ],
                        "usage": usage,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer_of(prompt: str) -> str:
        number = int(re.search(r"Question (\d+)", prompt).group(1))  # type: ignore[union-attr]
        return LETTERS[number % 4]

    def reply(self, model: str, prompt: str) -> str:
        if model.startswith("mute"):
            return "Hard to say."
        if model.startswith("judge"):
            reference = re.search(r"Reference answer:\s*(\S+)", prompt).group(1)  # type: ignore[union-attr]
            graded = prompt.split("Answer to grade:", 1)[1]
            return "CORRECT" if f"({reference})" in graded else "INCORRECT"
        right = self.answer_of(prompt)
        letter = right if model.startswith("right") else LETTERS[(LETTERS.index(right) + 1) % 4]
        return f"Let me think. The answer is ({letter})."

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def quiz() -> Iterator[Quiz]:
    server = Quiz()
    yield server
    server.close()


def quiz_pool(quiz: Quiz, names: list[str], api_key: str, price: float = 1e-6) -> list[ModelSpec]:
    return [
        ModelSpec(
            name,
            litellm_model=f"openai/{name}",
            input_cost_per_token=price,
            output_cost_per_token=2 * price,
            litellm_params={"api_base": quiz.api_base, "api_key": api_key},
        )
        for name in names
    ]


def questions(n: int) -> list[Question]:
    return [
        Question(f"q{i}", f"Question {i}: which option is right?\nA) a\nB) b\nC) c\nD) d", LETTERS[i % 4], "quiz")
        for i in range(n)
    ]


def write_questions(path: Path, items: list[Question]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": q.id, "query": q.query, "answer": q.answer, "task": q.task}) + "\n" for q in items),
        encoding="utf-8",
    )
    return path


def write_models(path: Path, pool: list[ModelSpec]) -> Path:
    entries = [
        {
            "name": m.name,
            "litellm_model": m.litellm_model,
            "input_cost_per_token": m.input_cost_per_token,
            "output_cost_per_token": m.output_cost_per_token,
            "litellm_params": dict(m.litellm_params),
        }
        for m in pool
    ]
    path.write_text(json.dumps({"models": entries}), encoding="utf-8")
    return path


def outcomes(path: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(id, model) → (score, output tokens, cost) of a routing log, via the loader."""
    return {
        (r.id, model): (o.score, o.output_tokens, o.cost) for r in load_logs(path) for model, o in r.outcomes.items()
    }


def raw_pairs(path: Path) -> list[tuple[str, str]]:
    """Every (id, model) written, line by line (duplicates would show here)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        pairs += [(data["id"], model) for model in data["outcomes"]]
    return pairs


# ------------------------------------------------------------------------------------------- collecting
def test_collect_writes_graded_routing_logs(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model"], api_key)
    out = tmp_path / "logs.jsonl"
    report = collect(questions(6), pool, out, "mcq", concurrency=4)

    assert report.complete and report.lines_written == 12 and not report.failing
    logs = load_logs(out)
    assert sorted(r.id for r in logs) == [f"q{i}" for i in range(6)]  # in the order the answers came
    assert logs.tasks == ["quiz"] * 6
    for record in logs:
        right, wrong = record.outcomes["right-model"], record.outcomes["wrong-model"]
        assert (right.score, wrong.score) == (1.0, 0.0)
        assert right.output_tokens == 7 and right.input_tokens > 0 and right.latency_s > 0
        assert right.cost == pytest.approx(right.input_tokens * 1e-6 + right.output_tokens * 2e-6)
    assert report.spent_usd == pytest.approx(sum(o.cost for r in logs for o in r.outcomes.values()))
    assert api_key not in out.read_text(encoding="utf-8")


def test_rerun_asks_nothing_already_answered(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model"], api_key)
    out = tmp_path / "logs.jsonl"
    collect(questions(4), pool, out, "mcq")
    asked = len(quiz.requests)

    again = collect(questions(4), pool, out, "mcq")
    assert again.lines_written == 0 and again.complete and len(quiz.requests) == asked

    more = collect(questions(6), pool, out, "mcq")  # two new questions: only they are asked
    assert more.lines_written == 4 and len(quiz.requests) == asked + 4
    assert sorted(raw_pairs(out)) == sorted(set(raw_pairs(out)))


def test_a_failing_model_is_reported_and_the_run_goes_on(
    loopback: Any, tmp_path: Path, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    def spec(name: str) -> ModelSpec:
        return ModelSpec(
            name,
            litellm_model=f"openai/{name}",
            input_cost_per_token=1e-6,
            output_cost_per_token=1e-6,
            litellm_params={"api_base": loopback.api_base, "api_key": api_key},
        )

    pool = [spec("steady"), spec("flaky-model"), spec("broken-model")]
    items = [Question(f"q{i}", f"Say something about topic {i}.", "answer from") for i in range(12)]
    out = tmp_path / "logs.jsonl"
    with caplog.at_level(logging.WARNING, logger="eccos"):
        report = collect(items, pool, out, "contains", concurrency=4, num_retries=1, max_consecutive_failures=5)

    steady, flaky, broken = (report.tallies[n] for n in ("steady", "flaky-model", "broken-model"))
    assert steady.written == 12 and steady.failed == 0
    assert broken.written == 0 and broken.gave_up and broken.not_attempted > 0
    assert broken.failed <= 5 + 3 and broken.not_attempted == 12 - broken.failed  # 5 in a row, 3 more in flight
    assert flaky.written + flaky.failed + flaky.not_attempted == 12 and flaky.written > 0
    assert "broken-model" in report.failing and not report.complete
    assert all(o.score == 1.0 for r in load_logs(out) for o in r.outcomes.values())
    everything = json.dumps(report.to_dict()) + out.read_text(encoding="utf-8") + caplog.text
    assert api_key not in everything  # the broken server echoes the credential in its error

    loopback.fail_rate = 0.0  # the outage is over: a rerun fills in exactly what is missing
    pool[2] = dataclasses.replace(pool[2], litellm_model="openai/fixed-model")
    rerun = collect(items, pool, out, "contains", concurrency=4)
    assert rerun.complete and rerun.lines_written == (12 - flaky.written) + 12
    assert len(raw_pairs(out)) == 36 == len(set(raw_pairs(out)))


def test_limit_usd_stops_before_the_spend_passes_it(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model"], api_key, price=1e-3)
    out = tmp_path / "logs.jsonl"
    report = collect(questions(20), pool, out, "mcq", concurrency=4, max_tokens=16, limit_usd=0.5)

    assert report.stopped_by_limit and not report.complete
    assert 0 < report.spent_usd <= 0.5
    assert sum(c for _, _, c in outcomes(out).values()) <= 0.5
    assert sum(t.not_attempted for t in report.tallies.values()) == report.missing

    rest = collect(questions(20), pool, out, "mcq", concurrency=4, max_tokens=16)
    assert rest.complete and len(raw_pairs(out)) == 40 == len(set(raw_pairs(out)))


def test_judge_grades_open_answers_with_a_pool_model(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model", "judge-model"], api_key)
    judge = make_grader("judge", pool=pool, judge_model="judge-model")
    out = tmp_path / "logs.jsonl"
    report = collect(questions(4), pool, out, judge, models=["right-model", "wrong-model"])

    assert report.complete and report.judge_cost > 0
    assert report.spent_usd == pytest.approx(report.judge_cost + sum(t.cost for t in report.tallies.values()))
    scores = {key: score for key, (score, _, _) in outcomes(out).items()}
    assert {s for (_, m), s in scores.items() if m == "right-model"} == {1.0}
    assert {s for (_, m), s in scores.items() if m == "wrong-model"} == {0.0}
    assert quiz.requests.count("judge-model") == 8


def test_a_judge_without_verdict_fails_the_pair_and_its_cost_still_counts(
    quiz: Quiz, tmp_path: Path, api_key: str
) -> None:
    pool = quiz_pool(quiz, ["right-model", "mute-judge"], api_key)
    judge = make_grader("judge", pool=pool, judge_model="mute-judge")
    out = tmp_path / "logs.jsonl"
    report = collect(questions(3), pool, out, judge, models=["right-model"])

    tally = report.tallies["right-model"]
    assert tally.written == 0 and tally.failed == 3 and "no CORRECT / INCORRECT verdict" in tally.last_error
    assert report.judge_cost > 0 and report.spent_usd == pytest.approx(tally.cost + report.judge_cost)
    assert not out.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- crash safety
def _reference_run(quiz: Quiz, pool: list[ModelSpec], items: list[Question], tmp_path: Path) -> dict:
    reference = tmp_path / "reference.jsonl"
    assert collect(items, pool, reference, "mcq", concurrency=4).complete
    return outcomes(reference)


def test_a_run_killed_mid_write_resumes_to_the_uninterrupted_log(tmp_path: Path, api_key: str) -> None:
    quiz = Quiz(delay_s=0.03)
    try:
        pool = quiz_pool(quiz, ["right-model", "wrong-model", "right-too"], api_key)
        items = questions(40)
        qfile = write_questions(tmp_path / "questions.jsonl", items)
        mfile = write_models(tmp_path / "models.json", pool)
        out = tmp_path / "logs.jsonl"
        command = [sys.executable, "-m", "eccos_core.cli", "collect", "--questions", str(qfile), "--models"]
        command += [str(mfile), "--out", str(out), "--grader", "mcq", "--concurrency", "4"]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 15:
                break
            time.sleep(0.01)
        assert child.poll() is None, "the run finished before it could be killed; make the quiz slower"
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = out.read_bytes().count(b"\n")
        assert 15 <= before < 120

        resumed = collect(items, pool, out, "mcq", concurrency=4)
        assert resumed.complete and resumed.lines_written == 120 - before
        assert len(raw_pairs(out)) == 120 == len(set(raw_pairs(out)))  # nothing lost, nothing twice
        assert outcomes(out) == _reference_run(quiz, pool, items, tmp_path)
    finally:
        quiz.close()


def test_a_cut_off_last_line_is_skipped_by_the_loader_and_asked_again(
    quiz: Quiz, tmp_path: Path, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model"], api_key)
    items = questions(6)
    out = tmp_path / "logs.jsonl"
    collect(items[:3], pool, out, "mcq")
    torn = json.dumps({"id": "q3", "query": items[3].query, "outcomes": {"right-model": {"score": 1.0}}})
    with out.open("a", encoding="utf-8") as handle:
        handle.write(torn[: len(torn) // 2])  # what a kill mid-write would leave

    with caplog.at_level(logging.WARNING, logger="eccos_core.logs"):
        assert len(load_logs(out)) == 3
    assert f"{out}:7: skipped the last line" in caplog.text

    report = collect(items, pool, out, "mcq")
    assert report.torn_bytes == len(torn) // 2 and report.complete
    assert outcomes(out) == _reference_run(quiz, pool, items, tmp_path)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the log's descriptor through /proc")
def test_a_failed_write_leaves_only_complete_lines(
    quiz: Quiz, tmp_path: Path, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = quiz_pool(quiz, ["right-model"], api_key)
    out = tmp_path / "logs.jsonl"
    real_write, calls = os.write, []

    def full_disk(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") != str(out):
            return real_write(fd, data)
        calls.append(fd)
        if len(calls) == 3:  # the disk fills up halfway through the third line
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("eccos_core.collect.os.write", full_disk)
    with pytest.raises(CollectError, match=r"No space left on device.*run again to resume"):
        collect(questions(8), pool, out, "mcq", concurrency=1)
    monkeypatch.undo()

    assert out.read_bytes().endswith(b"\n") and len(load_logs(out)) == 2
    assert collect(questions(8), pool, out, "mcq").complete
    assert len(raw_pairs(out)) == 8 == len(set(raw_pairs(out)))


def test_two_runs_on_one_file_are_refused(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    out = tmp_path / "logs.jsonl"
    with LogAppender(out), pytest.raises(CollectError, match="another eccos collect is writing"):
        collect(questions(2), quiz_pool(quiz, ["right-model"], api_key), out, "mcq")


def test_a_changed_question_under_an_old_id_is_refused(quiz: Quiz, tmp_path: Path, api_key: str) -> None:
    pool = quiz_pool(quiz, ["right-model"], api_key)
    out = tmp_path / "logs.jsonl"
    collect(questions(2), pool, out, "mcq")
    changed = [Question("q1", "Question 9: a new text under an old id", "B")]
    with pytest.raises(CollectError, match="'q1' with another query text"):
        collect(changed, pool, out, "mcq")


# ------------------------------------------------------------------------------------------ log loader
def test_loader_merges_the_lines_of_one_id(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    lines = [
        {"id": "a", "query": "What is 2 + 2?", "task": "math", "outcomes": {"m1": {"score": 1, "latency_s": 0.5}}},
        {"id": "b", "query": "Capital of France?", "outcomes": {"m1": {"score": 0}}},
        {"id": "a", "query": "What is 2 + 2?", "outcomes": {"m2": {"score": 0, "output_tokens": 3}}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    logs = load_logs(path)
    assert [r.id for r in logs] == ["a", "b"] and logs.tasks == ["math", None]
    assert set(logs[0].outcomes) == {"m1", "m2"} and logs[0].outcomes["m1"].latency_s == 0.5
    assert logs.scores(["m1", "m2"]).tolist()[0] == [1.0, 0.0]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"id": "a", "query": "Another text", "outcomes": {"m2": {"score": 1}}}, r"logs.jsonl:2: id 'a' has another"),
        ({"id": "a", "query": "Q", "outcomes": {"m1": {"score": 1}}}, r"logs.jsonl:2: model 'm1' already .* line 1"),
        ({"id": "a", "query": "Q", "task": "y", "outcomes": {"m2": {"score": 1}}}, r"logs.jsonl:2: id 'a' has task"),
    ],
)
def test_loader_refuses_lines_of_one_id_that_disagree(tmp_path: Path, second: dict, message: str) -> None:
    path = tmp_path / "logs.jsonl"
    first = {"id": "a", "query": "Q", "task": "x", "outcomes": {"m1": {"score": 0}}}
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n", encoding="utf-8")
    with pytest.raises(LogFormatError, match=message):
        load_logs(path)


def test_loader_still_refuses_a_malformed_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    good = json.dumps({"id": "a", "query": "Q", "outcomes": {"m1": {"score": 0}}})
    path.write_text(good + "\n" + good[:20] + "\n" + good.replace('"a"', '"b"') + "\n", encoding="utf-8")
    with pytest.raises(LogFormatError, match=r"logs.jsonl:2: not valid JSON"):
        load_logs(path)


# ------------------------------------------------------------------------------------------- inputs, CLI
def test_a_grader_that_raises_is_reported_and_the_run_goes_on(loopback: Any, tmp_path: Path, api_key: str) -> None:
    from eccos_core.graders import Grader

    class Fragile(Grader):
        name = "fragile"

        def grade(self, response: str, answer: Any, query: str = "") -> float:
            if "topic 1." in query:
                raise ZeroDivisionError("a bug in the user's grader")
            return 1.0

    pool = [
        ModelSpec(
            "steady",
            litellm_model="openai/steady",
            input_cost_per_token=1e-6,
            output_cost_per_token=1e-6,
            litellm_params={"api_base": loopback.api_base, "api_key": api_key},
        )
    ]
    items = [Question(f"q{i}", f"Say something about topic {i}.", "x") for i in range(4)]
    report = collect(items, pool, tmp_path / "logs.jsonl", Fragile(), concurrency=1)
    tally = report.tallies["steady"]
    assert tally.written == 3 and tally.failed == 1 and "ZeroDivisionError" in tally.last_error
    assert tally.cost > 0 and len(load_logs(tmp_path / "logs.jsonl")) == 3  # the paid answers are kept


def test_a_lone_surrogate_in_a_question_is_refused_before_anything_is_paid(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 1, "query": "Q \\ud800?", "answer": "B"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:1: 'query' holds a lone surrogate"):
        load_questions(path, {"mcq": make_grader("mcq")}, default="mcq")


def test_questions_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    graders = {"mcq": make_grader("mcq")}
    path.write_text('{"id": 1, "query": "Q?", "answer": "B"}\n{"id": 1, "query": "R?", "answer": "C"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:2: id '1' already used on line 1"):
        load_questions(path, graders, default="mcq")
    path.write_text('{"id": 1, "query": "Q?", "answer": "Paris"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:1: the mcq grader needs an option letter"):
        load_questions(path, graders, default="mcq")
    path.write_text('{"id": 1, "query": "Q?"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:1: missing \['answer'\]"):
        load_questions(path, graders, default="mcq")


def test_cli_collect_prints_a_summary_and_resumes(
    quiz: Quiz, tmp_path: Path, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = quiz_pool(quiz, ["right-model", "wrong-model"], api_key)
    qfile = write_questions(tmp_path / "questions.jsonl", questions(5))
    mfile = write_models(tmp_path / "models.json", pool)
    out = tmp_path / "logs.jsonl"
    args = ["collect", "--questions", str(qfile), "--models", str(mfile), "--out", str(out), "--grader", "mcq"]

    assert main(args) == 0
    printed = capsys.readouterr()
    assert "10 lines written" in printed.out and "right-model" in printed.out
    assert "right-model" in printed.err  # the progress bars
    assert main(args) == 0
    assert "0 lines written" in capsys.readouterr().out
    assert api_key not in printed.out + printed.err

    assert main([*args, "--grader", "judge"]) == 2  # no judge model named
    assert "--judge-model" in capsys.readouterr().err
