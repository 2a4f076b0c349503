"""Graders score answers the way a routing log needs: 1 for right, 0 for wrong, on real benchmark questions.

The real-data tests read ``../shared/data`` and are skipped where it is absent. RouterBench's files hold every
model's actual answer to ARC-Challenge and Winogrande with RouterBench's own correctness label, so the mcq
grader is checked against real answers, not only answers written for the test.
"""

from __future__ import annotations

import ast
import csv
import json
import random

import pytest

from eccos_core.datasets import shared_data_dir
from eccos_core.errors import ConfigError
from eccos_core.graders import (
    GRADERS,
    ContainsGrader,
    ExactGrader,
    GradingError,
    JudgeGrader,
    MultipleChoiceGrader,
    NumericGrader,
    extract_choice,
    extract_number,
    make_grader,
    parse_verdict,
)

LLMROUTER_QUERIES = shared_data_dir() / "llmrouter-9llm" / "query_data"
ROUTERBENCH = shared_data_dir() / "routerbench-routerdc-subset"


def _llmrouter_rows(task: str) -> list[dict]:
    if not LLMROUTER_QUERIES.is_dir():
        pytest.skip(f"shared data not present at {LLMROUTER_QUERIES}")
    rows = []
    for name in ("default_query_test.jsonl", "default_query_train.jsonl"):
        with (LLMROUTER_QUERIES / name).open(encoding="utf-8") as handle:
            rows += [row for row in map(json.loads, handle) if row["task_name"] == task]
    return rows


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("C", "C"),
        ("(B) palms covered with oil", "B"),
        ("D) buildings will be built faster", "D"),
        ("The answer is (C).", "C"),
        ("Answer: B", "B"),
        ("Let me think step by step... so the correct answer is option A.", "A"),
        ("**B**", "B"),
        ("\\boxed{D}", "D"),
        ("I'd go with B here", "B"),
        ("A", "A"),
        ("I do not know.", None),
        ("the answer is a cat", None),
        ("Both A and B look right", None),
        ("", None),
    ],
)
def test_mcq_reads_the_chosen_letter(response: str, letter: str | None) -> None:
    assert extract_choice(response) == letter


def test_mcq_scores_one_for_the_right_letter_only() -> None:
    grader = MultipleChoiceGrader()
    assert grader.grade("The answer is (C).", "C") == 1.0
    assert grader.grade("The answer is (C).", "(C)") == 1.0
    assert grader.grade("The answer is (B).", "C") == 0.0
    assert grader.grade("I cannot answer that", "C") == 0.0
    with pytest.raises(ValueError, match="option letter"):
        grader.check_answer("Cambodia")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", 72.0),
        ("so she makes $1,234.50 a week", 1234.5),
        ("The answer is 18.", 18.0),
        ("x = -7", -7.0),
        ("\\boxed{\\frac{3}{4}}", 0.75),
        ("3 apples, then \\boxed{12} in total, and 5 spare", 12.0),
        (42, 42.0),
        ("no number here", None),
    ],
)
def test_numeric_reads_the_final_number(text: object, number: float | None) -> None:
    if number is None:
        assert extract_number(text) is None
    else:
        assert extract_number(text) == pytest.approx(number)


def test_numeric_compares_numbers_not_text() -> None:
    grader = NumericGrader()
    assert grader.grade("She earns 1,000 dollars.", "#### 1000") == 1.0
    assert grader.grade("The answer is 0.5", "1/2") == 1.0
    assert grader.grade("The answer is 1001", "#### 1000") == 0.0
    assert grader.grade("I am not sure.", "#### 1000") == 0.0
    with pytest.raises(ValueError, match="number"):
        grader.check_answer("Paris")


def test_exact_and_contains_normalise_like_squad() -> None:
    exact, contains = ExactGrader(), ContainsGrader()
    assert exact.grade("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact.grade("It is the Eiffel Tower", "eiffel tower") == 0.0
    assert contains.grade("It is the Eiffel Tower, in Paris.", "Eiffel Tower") == 1.0
    assert contains.grade("It is the Eiffel Towers", "Eiffel Tower") == 0.0  # whole words only
    assert contains.grade("Seats, mostly.", ["car seats", "seats"]) == 1.0  # any acceptable answer
    with pytest.raises(ValueError, match="non-empty"):
        exact.check_answer("  ")


def test_judge_verdicts_and_setup_errors(make_pool) -> None:
    assert parse_verdict("CORRECT") == 1.0
    assert parse_verdict("The answer is incorrect.\nVerdict: INCORRECT") == 0.0
    assert parse_verdict("At first it looks INCORRECT but on reflection it is CORRECT") == 1.0
    with pytest.raises(GradingError, match="no CORRECT"):
        parse_verdict("I think so")
    pool = make_pool(["gemma-2-9b-it"])
    with pytest.raises(ConfigError, match="not in the models file"):
        JudgeGrader(pool, "gpt-judge")
    with pytest.raises(ConfigError, match="--judge-model"):
        make_grader("judge", pool=pool)
    with pytest.raises(ConfigError, match="unknown grader"):
        make_grader("bleu")
    judge = make_grader(
        "judge", pool=pool, judge_model="gemma-2-9b-it", judge_prompt="Q {query} A {answer} R {response}"
    )
    assert judge.messages("R1", ["x", "y"], "Q1")[0]["content"] == "Q Q1 A x / y R R1"
    assert set(GRADERS) == {"mcq", "numeric", "exact", "contains", "f1", "judge"}


# ----------------------------------------------------------------------------------------- real data
def _routerbench_answers(name: str) -> list[tuple[str, str, float]]:
    """(model answer, gold letter, RouterBench's label) for every labelled answer of one RouterBench file.

    The gold letter is not in the file; it is the letter of the answers RouterBench marked correct (rows where
    those disagree, or none is correct, are left out).
    """
    path = ROUTERBENCH / name
    if not path.is_file():
        pytest.skip(f"shared data not present at {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    models = [key.split("|")[0] for key in rows[0] if key.endswith("|model_response")]
    out = []
    for row in rows:
        answers = {}
        for model in models:
            raw = row[f"{model}|model_response"]
            answers[model] = ast.literal_eval(raw)[0] if raw.startswith("[") else raw
        golds = {extract_choice(answers[m]) for m in models if row[m] in ("1", "1.0")} - {None}
        if len(golds) != 1:
            continue
        gold = golds.pop()
        out += [(answers[m], gold, float(row[m])) for m in models if row[m] != ""]
    return out


@pytest.mark.parametrize("name", ["arc_challenge_test.csv", "winograde_test.csv"])
def test_mcq_agrees_with_routerbench_on_real_model_answers(name: str) -> None:
    answers = _routerbench_answers(name)
    assert len(answers) > 4000
    grader = MultipleChoiceGrader()
    agree = sum(grader.grade(answer, gold) == label for answer, gold, label in answers)
    assert agree / len(answers) >= 0.995, f"agreement {agree}/{len(answers)}"
    assert any(label == 0.0 for _, _, label in answers)  # the check covers wrong answers too


def test_mcq_on_real_llmrouter_questions() -> None:
    rows = _llmrouter_rows("mmlu") + _llmrouter_rows("commonsense_qa") + _llmrouter_rows("openbook_qa")
    grader = MultipleChoiceGrader()
    rng = random.Random(0)
    for row in rows:
        gold = row["ground_truth"]
        grader.check_answer(gold)
        wrong = rng.choice([c for c in "ABCD" if c != gold])
        assert grader.grade(f"Let's think. {row['query'][:40]}... The answer is ({gold}).", gold) == 1.0
        assert grader.grade(f"{wrong}", gold) == 0.0


def test_numeric_on_real_gsm8k_solutions() -> None:
    rows = _llmrouter_rows("gsm8k")
    assert len(rows) >= 500
    grader = NumericGrader()
    for row in rows:
        solution = row["ground_truth"]  # a worked solution ending in "#### <number>"
        grader.check_answer(solution)
        final = solution.rsplit("####", 1)[1].strip()
        assert grader.grade(solution, solution) == 1.0
        assert grader.grade(f"Step by step we get {final}.", solution) == 1.0
        assert grader.grade(f"The answer is {extract_number(final) + 1:g}", solution) == 0.0


def test_contains_on_real_trivia_answers() -> None:
    rows = _llmrouter_rows("trivia_qa") + _llmrouter_rows("natural_qa")
    grader = ContainsGrader()
    for row in rows:
        gold = row["ground_truth"]
        grader.check_answer(gold)
        assert grader.grade(f"I believe it is {gold}, as far as I know.", gold) == 1.0
        assert grader.grade("I do not know.", gold) == 0.0 or "know" in gold.lower()
