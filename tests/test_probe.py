"""The shipped probe set: stratified, never seen by the shipped router, gradable, rebuilt exactly from its source."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from eccos_core.bundled import bundled_logs
from eccos_core.datasets import SHARED_DATA_ENV, shared_data_dir
from eccos_core.errors import InputError
from eccos_core.graders import make_grader
from eccos_core.logs import split_logs
from eccos_core.probe import PROBE_SET, build_probe_set, probe_questions


def test_every_prefix_is_stratified_by_task_and_unseen_by_the_shipped_router() -> None:
    questions = probe_questions(200)
    counts = Counter(q.task for q in questions)
    assert len(counts) == 11 and max(counts.values()) - min(counts.values()) <= 1
    fitted = set(split_logs(bundled_logs(), test_frac=0.2, seed=0)[0].queries)
    with gzip.open(PROBE_SET, "rt") as handle:
        size = sum(1 for _ in handle)
    assert size > 1000 and not any(q.query in fitted for q in probe_questions(size))
    assert [q.id for q in probe_questions(50)] == [q.id for q in questions[:50]]


def test_each_question_is_sent_with_its_options_and_graded_by_its_rule() -> None:
    by_grader = {q.grader: q for q in probe_questions(30)}
    assert set(by_grader) == {"mcq", "numeric", "f1"}
    mcq = by_grader["mcq"]
    assert mcq.prompt.startswith(mcq.query.rstrip()) and "\nA. " in mcq.prompt
    assert make_grader("mcq").grade(f"The answer is ({mcq.answer}).", mcq.answer) == 1.0
    numeric = by_grader["numeric"]
    assert make_grader("numeric").grade(f"\\boxed{{{numeric.answer}}}", numeric.answer) == 1.0


@pytest.mark.parametrize("n", [0, -3, 10**6, True, 2.5])
def test_a_probe_size_out_of_range_is_refused(n) -> None:
    with pytest.raises(InputError, match="a probe asks between 1 and"):
        probe_questions(n)


def test_the_shipped_set_is_rebuilt_byte_for_byte_from_its_source(tmp_path) -> None:
    source = shared_data_dir() / "llmrouter-9llm"
    if not (source / "query_data").is_dir():
        pytest.skip(f"source data set {source} is absent (set ${SHARED_DATA_ENV} to the folder holding it)")
    rebuilt = build_probe_set(source, tmp_path / "probe.jsonl.gz")
    with gzip.open(rebuilt) as new, gzip.open(PROBE_SET) as shipped:
        assert new.read() == shipped.read()


def test_the_f1_grader_gives_partial_credit() -> None:
    f1 = make_grader("f1")
    assert f1.grade("Bayreuth", "bayreuth germany") == pytest.approx(2 / 3)
    assert f1.grade("It was Sammy Davis Jr.", ["Sammy Davis, Jr", "Sammy"]) == pytest.approx(0.75)  # 3 of 5 words
    assert f1.grade("no idea", "Paris") == 0.0
