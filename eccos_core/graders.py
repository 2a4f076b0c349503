r"""Graders: score a model's answer against the reference answer, for the routing logs ``eccos collect`` writes.

A score lies in [0, 1] (1 = correct), exactly what a routing log's ``score`` holds. Five graders run locally:

* ``mcq``: the chosen option letter (``"The answer is (C)"``, ``"C) palms"``, ``"\boxed{C}"``) against the
  reference letter;
* ``numeric``: the final number (GSM8K's ``#### 42``, ``\boxed{42}``, "the answer is 42", else the last number
  in the text) against the reference number, which may itself be a worked solution ending in ``#### 42``;
* ``exact``: the whole answer equals a reference answer after SQuAD-style normalisation (case, punctuation,
  articles, spaces);
* ``contains``: a normalised reference answer occurs in the answer as whole words;
* ``f1``: SQuAD's token F1 with the best-matching reference (partial credit in [0, 1], as LLMRouter scores its
  open questions).

The sixth, ``judge``, asks a model of the pool (with its own prompt) whether the answer is right, for open
answers no rule can check. A reference may be a list of acceptable answers for ``exact``, ``contains``, ``f1``
and ``judge``.

Example:
    >>> from eccos_core.graders import make_grader
    >>> make_grader("mcq").grade("I think the answer is (C).", "C")
    1.0
    >>> make_grader("numeric").grade("She pays 3 * 4 = 12 dollars.\n#### 12", "#### 12")
    1.0
"""

from __future__ import annotations

import math
import re
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from eccos_core.errors import ConfigError, DispatchError, EccosError

if TYPE_CHECKING:
    from eccos_core.dispatch import Dispatcher
    from eccos_core.pricing import ModelSpec


class GradingError(EccosError, RuntimeError):
    """A grader could not score an answer (a judge gave no verdict); the pair is retried by the next run."""

    def __init__(self, message: str, cost: float = 0.0) -> None:
        super().__init__(message)
        self.cost = cost
        """USD the failed grading still cost (a judge's call that came back without a verdict)."""


@dataclass(frozen=True)
class Grade:
    """A score and what grading it cost."""

    score: float
    """In [0, 1]; 1 = correct."""
    cost: float = 0.0
    """USD spent grading (the judge's call; 0 for the local graders)."""


class Grader(ABC):
    """Scores one answer against its reference answer."""

    name: ClassVar[str]
    """Name on the command line (``--grader``) and in a question's ``grader`` field."""

    def check_answer(self, answer: Any) -> None:  # noqa: B027  (a no-op default a grader may refine)
        """Raise ``ValueError`` (with what to fix) when ``answer`` is not a reference this grader can use.

        Called once per question when the questions file is read, so a bad reference stops the run before any
        money is spent.
        """

    @abstractmethod
    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """Score ``response`` against the reference ``answer`` (``query`` is the question, for judges)."""

    async def agrade(self, response: str, answer: Any, query: str = "") -> Grade:
        """Async :meth:`grade` with its cost; the local graders cost nothing."""
        return Grade(self.grade(response, answer, query))


# ------------------------------------------------------------------------------------------ multiple choice
_CHOICE_RULES = (
    # "The answer is (C)", "Answer: C", "correct answer is option C", "final answer: [C]"; the letter itself is
    # case-sensitive, so "the answer is a cat" names no option
    re.compile(r"\b(?i:answer)\s*(?:(?i:is)|:|=)?\s*(?:(?i:option|choice)\s*)?[(\[]?\s*([A-J])\s*[)\]]?(?![A-Za-z])"),
    re.compile(r"\\boxed\{\s*\(?\s*([A-J])\s*\)?\s*\}"),
    # the answer opens with the letter: "(C) palms", "C", "C.", "C) palms", "C: palms", "**C**" (not "I think")
    re.compile(r"^[\s*_\"'\[]*\(([A-J])\)"),
    re.compile(r"^[\s*_\"'\[]*([A-J])(?:[.:,)\]*_\"]|\s*$|[ \t]*\n)"),
    re.compile(r"\b(?i:option|choice)\s*\(?([A-J])\)?(?![A-Za-z])"),
)
_LONE_LETTER = re.compile(r"(?<![A-Za-z'])([A-H])(?![A-Za-z'])")


def extract_choice(text: str) -> str | None:
    """The option letter (A–J) an answer chose, or ``None`` when it names none unambiguously."""
    text = str(text)
    for rule in _CHOICE_RULES:
        found = rule.search(text)
        if found:
            return found.group(1).upper()
    # a single standalone capital letter anywhere ("I'd pick B here"); "A" followed by a word is an article
    lone = {
        m.group(1)
        for m in _LONE_LETTER.finditer(text)
        if not (m.group(1) == "A" and re.match(r"\s+(?!and\b|or\b)[a-z]", text[m.end() :]))
    }
    return lone.pop() if len(lone) == 1 else None


class MultipleChoiceGrader(Grader):
    """1 when the answer's option letter is the reference letter (``"C"``, ``"(C)"`` or ``"C. Cambodia"``)."""

    name = "mcq"

    def check_answer(self, answer: Any) -> None:
        """The reference must name one option letter A–J."""
        if not isinstance(answer, str) or extract_choice(answer) is None:
            raise ValueError(f"the mcq grader needs an option letter A-J as 'answer', got {answer!r}")

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """1.0 when the chosen letter matches, else 0.0 (no letter chosen counts as wrong)."""
        chosen = extract_choice(response)
        return float(chosen is not None and chosen == extract_choice(str(answer)))


# ---------------------------------------------------------------------------------------------- numbers
_NUMBER = r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
_FINAL_NUMBER_RULES = (
    re.compile(r"####\s*(" + _NUMBER + r")"),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
    re.compile(r"\\boxed\{\s*\\d?frac\{(\d+)\}\{(\d+)\}\s*\}"),
    re.compile(r"(?i)\banswer\s*(?:is|:|=)?\s*[:=]?\s*(" + _NUMBER + r")"),
)
_ANY_NUMBER = re.compile(_NUMBER)


def _to_float(token: str) -> float | None:
    cleaned = token.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in cleaned:
            num, den = cleaned.split("/", 1)
            return float(num) / float(den) if float(den) != 0 else None
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    r"""The final number of an answer or worked solution, or ``None`` when it holds none.

    GSM8K's ``#### N`` wins, then the last ``\boxed{N}`` (fractions too), then the last "answer is N", then
    the last number in the text. Thousands separators, ``$`` and ``a/b`` fractions are understood.
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(text) else None
    text = str(text)
    for rule in _FINAL_NUMBER_RULES:
        found = rule.findall(text)
        if found:
            last = found[-1]
            if isinstance(last, tuple):  # \frac{a}{b}
                return float(last[0]) / float(last[1]) if float(last[1]) else None
            value = _to_float(last)
            if value is not None:
                return value
    numbers = [_to_float(m) for m in _ANY_NUMBER.findall(text)]
    numbers = [v for v in numbers if v is not None]
    return numbers[-1] if numbers else None


class NumericGrader(Grader):
    """1 when the answer's final number equals the reference's (relative tolerance ``rel_tol``)."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-6) -> None:
        """``rel_tol``: relative difference still counted equal (absolute below magnitude 1)."""
        self.rel_tol = rel_tol

    def check_answer(self, answer: Any) -> None:
        r"""The reference must hold a number (plain, ``#### N`` or ``\boxed{N}``)."""
        if extract_number(answer) is None:
            raise ValueError(
                f"the numeric grader needs a number as 'answer' (e.g. 42 or '... #### 42'), got {answer!r}"
            )

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """1.0 when the final numbers agree, else 0.0."""
        got, want = extract_number(response), extract_number(answer)
        if got is None or want is None:
            return 0.0
        return float(abs(got - want) <= self.rel_tol * max(1.0, abs(want)))


# ------------------------------------------------------------------------------------------------ text
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "‘’“”")


def normalize_text(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _references(answer: Any) -> list[str]:
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return [str(answer)]
    if isinstance(answer, Sequence) and answer and all(isinstance(a, (str, int, float)) for a in answer):
        return [str(a) for a in answer]
    return []


class _TextGrader(Grader):
    def check_answer(self, answer: Any) -> None:
        refs = _references(answer)
        if not refs or not all(normalize_text(r) for r in refs):
            raise ValueError(
                f"the {self.name} grader needs a non-empty string or a list of acceptable strings as 'answer', "
                f"got {answer!r}"
            )


class ExactGrader(_TextGrader):
    """1 when the whole answer equals one reference answer after :func:`normalize_text`."""

    name = "exact"

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """1.0 on a normalised exact match with any reference, else 0.0."""
        got = normalize_text(response)
        return float(any(got == normalize_text(ref) for ref in _references(answer)))


class ContainsGrader(_TextGrader):
    """1 when one normalised reference answer occurs in the normalised answer as whole words."""

    name = "contains"

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """1.0 when a reference occurs in the answer, else 0.0."""
        got = f" {normalize_text(response)} "
        return float(any(f" {ref} " in got for ref in map(normalize_text, _references(answer)) if ref))


class F1Grader(_TextGrader):
    """Token F1 (SQuAD's) of the answer against the best-matching reference: partial credit for open answers."""

    name = "f1"

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """The highest token F1 between the normalised answer and a normalised reference, in [0, 1]."""
        got = normalize_text(response).split()
        return max((_token_f1(got, normalize_text(ref).split()) for ref in _references(answer)), default=0.0)


def _token_f1(got: list[str], want: list[str]) -> float:
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------------------------- judge
JUDGE_PROMPT = """You are grading an answer to a question against the reference answer.

Question:
{query}

Reference answer:
{answer}

Answer to grade:
{response}

Is the answer to grade correct according to the reference answer? Ignore style and length; judge only \
whether its final answer agrees with the reference. Reply with one word: CORRECT or INCORRECT."""
"""The judge's default prompt; ``{query}``, ``{answer}`` and ``{response}`` are filled in (other text is kept
as written, braces included)."""

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


def parse_verdict(text: str) -> float:
    """1.0 for a final CORRECT, 0.0 for a final INCORRECT; :class:`GradingError` when neither is there."""
    found = _VERDICT.findall(text or "")
    if not found:
        raise GradingError(f"the judge gave no CORRECT / INCORRECT verdict: {text[:200]!r}")
    return float(found[-1].upper() == "CORRECT")


class JudgeGrader(Grader):
    """An LLM judge: a pool model reads the question, the reference and the answer, and says CORRECT or not.

    Each verdict is one call to ``model`` through the core's dispatch (LiteLLM retries, no fallback); its
    cost is reported by :meth:`agrade` and counted by ``eccos collect`` against ``--limit-usd``.
    """

    name = "judge"

    def __init__(
        self,
        pool: Sequence[ModelSpec],
        model: str,
        prompt: str = JUDGE_PROMPT,
        *,
        num_retries: int = 2,
        max_tokens: int | None = None,
    ) -> None:
        """Configure the judge; nothing is sent here.

        Args:
            pool: The pool the judge model is taken from (its ``litellm_params`` reach the provider).
            model: Pool name of the judge.
            prompt: Template with ``{query}``, ``{answer}`` and ``{response}``.
            num_retries: LiteLLM retries per verdict.
            max_tokens: Cap on the judge's reply (``None``: the provider's default; reasoning judges need room).

        Raises:
            ConfigError: ``model`` is not in ``pool`` or ``prompt`` lacks ``{response}``.
        """
        from eccos_core.dispatch import Dispatcher

        names = [m.name for m in pool]
        if model not in names:
            raise ConfigError(f"judge model {model!r} is not in the models file; it names {names}")
        if "{response}" not in prompt:
            raise ConfigError("the judge prompt must contain {response} (and usually {query} and {answer})")
        self.model = model
        self.spec = next(m for m in pool if m.name == model)
        self.prompt = prompt
        self.num_retries = num_retries
        self.max_tokens = max_tokens
        self.dispatcher: Dispatcher = Dispatcher(pool)

    def check_answer(self, answer: Any) -> None:
        """Any non-empty reference (a string, a number or a list of acceptable answers)."""
        if not _references(answer):
            raise ValueError(f"the judge grader needs a reference answer, got {answer!r}")

    def messages(self, response: str, answer: Any, query: str) -> list[dict[str, str]]:
        """The judge's prompt for one answer."""
        reference = " / ".join(_references(answer))
        text = self.prompt.replace("{query}", query).replace("{answer}", reference).replace("{response}", response)
        return [{"role": "user", "content": text}]

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_retries": self.num_retries}
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        return options

    def grade(self, response: str, answer: Any, query: str = "") -> float:
        """The judge's verdict (a blocking call)."""
        from eccos_core.planner import QueryPlan

        try:
            reply = self.dispatcher.send(
                QueryPlan.direct(self.model), self.messages(response, answer, query), **self._options()
            )
        except DispatchError as exc:
            raise GradingError(f"judge {self.model!r} failed: {exc}") from None
        return parse_verdict(reply.text)

    async def agrade(self, response: str, answer: Any, query: str = "") -> Grade:
        """The judge's verdict and the USD its call cost."""
        from eccos_core.planner import QueryPlan

        try:
            reply = await self.dispatcher.asend(
                QueryPlan.direct(self.model), self.messages(response, answer, query), **self._options()
            )
        except DispatchError as exc:
            raise GradingError(f"judge {self.model!r} failed: {exc}") from None
        try:
            return Grade(parse_verdict(reply.text), reply.cost)
        except GradingError as exc:
            raise GradingError(str(exc), cost=reply.cost) from None


GRADERS: dict[str, type[Grader]] = {
    g.name: g for g in (MultipleChoiceGrader, NumericGrader, ExactGrader, ContainsGrader, F1Grader, JudgeGrader)
}
"""Grader name → class."""


def make_grader(
    name: str,
    *,
    pool: Sequence[ModelSpec] = (),
    judge_model: str | None = None,
    judge_prompt: str | None = None,
    num_retries: int = 2,
) -> Grader:
    """The grader called ``name`` (``mcq``, ``numeric``, ``exact``, ``contains``, ``f1`` or ``judge``).

    Raises:
        ConfigError: Unknown name, or ``judge`` without a ``judge_model`` from ``pool``.
    """
    if name not in GRADERS:
        raise ConfigError(f"unknown grader {name!r}: choose one of {', '.join(GRADERS)}")
    if name == "judge":
        if not judge_model:
            raise ConfigError(
                "the judge grader needs a judge model: pass --judge-model NAME (a model of the models file)"
            )
        return JudgeGrader(pool, judge_model, judge_prompt or JUDGE_PROMPT, num_retries=num_retries)
    return GRADERS[name]()


__all__ = [
    "GRADERS",
    "JUDGE_PROMPT",
    "ContainsGrader",
    "ExactGrader",
    "F1Grader",
    "Grade",
    "Grader",
    "GradingError",
    "JudgeGrader",
    "MultipleChoiceGrader",
    "NumericGrader",
    "extract_choice",
    "extract_number",
    "make_grader",
    "normalize_text",
    "parse_verdict",
]
