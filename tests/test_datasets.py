"""Data-set converters, the bundled default data, and the routing-log / models-file validation they rely on.

The converter tests read the source data sets from ``shared_data_dir()`` and are skipped where a folder is
absent; each data set is converted once per module. The counts asserted below were checked by hand against
each data set's SOURCE.md (see the comment above each).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eccos_core.bundled import BUNDLED_LOGS, BUNDLED_MODELS, bundled_logs, bundled_models
from eccos_core.datasets import (
    CONVERTERS,
    SHARED_DATA_ENV,
    ConvertedDataset,
    convert,
    load_dataset,
    shared_data_dir,
)
from eccos_core.datasets.routerdc import PRICE_ASSUMPTION
from eccos_core.errors import ConfigError, LogFormatError, PricingError
from eccos_core.logs import LogRecord, Outcome, RoutingLogs, load_logs
from eccos_core.pricing import load_models

LLMROUTER = "llmrouter-9llm"
ROUTERBENCH = "routerbench-routerdc-subset"
ROUTERDC = "routerdc-7llm"


def _convert_or_skip(name: str) -> ConvertedDataset:
    source = shared_data_dir() / name
    if not source.is_dir():
        pytest.skip(f"source data set {source} is absent (set ${SHARED_DATA_ENV} to the folder holding {name})")
    return load_dataset(name, source)


@pytest.fixture(scope="module")
def llmrouter() -> ConvertedDataset:
    return _convert_or_skip(LLMROUTER)


@pytest.fixture(scope="module")
def routerbench() -> ConvertedDataset:
    return _convert_or_skip(ROUTERBENCH)


@pytest.fixture(scope="module")
def routerdc() -> ConvertedDataset:
    return _convert_or_skip(ROUTERDC)


def _assert_well_formed(logs: RoutingLogs, prefix: str) -> None:
    """Checks every converted data set must pass, whatever its source."""
    ids = [r.id for r in logs]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(prefix) for i in ids)
    queries = logs.queries
    assert len(set(queries)) == len(queries), "a query text appears twice"
    assert all(q.strip() for q in queries)
    assert all(r.task for r in logs)
    for record in logs:
        for outcome in record.outcomes.values():
            assert 0.0 <= outcome.score <= 1.0 and not math.isnan(outcome.score)


# ---- llmrouter-9llm ---------------------------------------------------------------------------------------

LLMROUTER_MODELS = {
    "qwen2.5-7b-instruct",
    "llama-3.1-8b-instruct",
    "mistral-7b-instruct-v0.3",
    "gemma-2-9b-it",
    "codegemma-7b",
    "llama3-chatqa-1.5-8b",
    "llama3-chatqa-1.5-70b",
    "llama-3.1-nemotron-51b-instruct",
    "llama-3.3-nemotron-super-49b-v1",
}
# SOURCE.md: 5,608 train + 500 test questions, 119 of the test ones also in train -> 5,989 distinct. The train
# task table there is off by the six queries listed twice in query_data (mmlu and openbook_qa / arc_challenge):
# train.json keeps the first (mmlu) copy, so train has mmlu 500, openbook_qa 496, arc_challenge 498. Adding
# the 50-per-task test questions not already in train gives these totals.
LLMROUTER_TASKS = {
    "natural_qa": 550,
    "trivia_qa": 550,
    "mmlu": 550,
    "gsm8k": 550,
    "mbpp": 529,
    "math": 504,
    "commonsense_qa": 500,
    "arc_challenge": 498,
    "openbook_qa": 496,
    "gpqa": 448,
    "agentverse-mgsm": 250,
    "agentverse-logicgrid": 200,
    "commongen": 200,
    "human_eval": 164,
}


def test_llmrouter_records_tasks_and_scores(llmrouter: ConvertedDataset) -> None:
    logs = llmrouter.logs
    assert len(logs) == 5989
    _assert_well_formed(logs, "llmrouter-")
    assert Counter(logs.tasks) == LLMROUTER_TASKS
    assert all(re.fullmatch(rf"llmrouter-{re.escape(r.task)}-\d+", r.id) for r in logs)
    assert all(set(r.outcomes) == LLMROUTER_MODELS for r in logs)
    # Binary everywhere except commongen's coverage fraction.
    for record in logs:
        scores = {o.score for o in record.outcomes.values()}
        if record.task != "commongen":
            assert scores <= {0.0, 1.0}
    commongen = [o.score for r in logs if r.task == "commongen" for o in r.outcomes.values()]
    assert any(0 < s < 1 for s in commongen)


def test_llmrouter_logs_no_invented_tokens_or_costs(llmrouter: ConvertedDataset) -> None:
    models = sorted(LLMROUTER_MODELS)
    for attribute in ("output_tokens", "input_tokens", "cost"):
        assert np.isnan(llmrouter.logs.matrix(attribute, models)).all()


def test_llmrouter_models_carry_list_prices(llmrouter: ConvertedDataset) -> None:
    specs = {m.name: m for m in llmrouter.models}
    assert set(specs) == LLMROUTER_MODELS
    assert specs["qwen2.5-7b-instruct"].litellm_model == "nvidia_nim/qwen/qwen2.5-7b-instruct"
    assert specs["llama-3.1-8b-instruct"].litellm_model == "nvidia_nim/meta/llama-3.1-8b-instruct"
    expected = {name: 2e-7 for name in LLMROUTER_MODELS}
    expected["gemma-2-9b-it"] = 1e-7
    for big in ("llama3-chatqa-1.5-70b", "llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1"):
        expected[big] = 9e-7
    for name, spec in specs.items():
        assert spec.input_cost_per_token == expected[name] == spec.output_cost_per_token
        assert spec.max_input_tokens in (8192, 32768, 131072)  # from NVIDIA's model cards (LiteLLM has none)
        assert not spec.supports_vision and spec.max_output_tokens == 4096


# ---- routerbench-routerdc-subset --------------------------------------------------------------------------

ROUTERBENCH_MODELS = {
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
}


def test_routerbench_records_after_drops_and_dedupe(routerbench: ConvertedDataset) -> None:
    # SOURCE.md: 3,178 rows; 14 broken ARC rows dropped -> 3,164 distinct sample_ids; two MBPP prompts appear
    # under two sample_ids each (mbpp.dev.87/29 and 278/58) -> 3,162 distinct queries.
    logs = routerbench.logs
    assert len(logs) == 3162
    _assert_well_formed(logs, "routerbench-")
    assert Counter(logs.tasks) == {"arc-challenge": 1470, "winogrande": 1267, "mbpp": 425}
    assert set(logs.models) == ROUTERBENCH_MODELS
    # The 14 sample_ids whose broken twin was dropped have no gpt-3.5 correctness left; every other record
    # has all 11 models.
    sizes = Counter(len(r.outcomes) for r in logs)
    assert sizes == {11: 3148, 10: 14}
    assert all("gpt-3.5-turbo-1106" not in r.outcomes for r in logs if len(r.outcomes) == 10)
    assert all(o.score in (0.0, 1.0) for r in logs for o in r.outcomes.values())


def test_routerbench_outcomes_have_tokens_and_costs(routerbench: ConvertedDataset) -> None:
    models = sorted(ROUTERBENCH_MODELS)
    logs = routerbench.logs
    observed = ~np.isnan(logs.scores(models))
    for attribute in ("output_tokens", "input_tokens", "cost"):
        values = logs.matrix(attribute, models)
        assert not np.isnan(values[observed]).any(), f"{attribute} missing on a scored outcome"
        assert (values[observed] > 0).all(), f"{attribute} not positive"
    # MBPP answers are code, ARC/Winogrande answers a letter: output lengths must show it.
    output = logs.matrix("output_tokens", models)
    is_mbpp = np.array([t == "mbpp" for t in logs.tasks])
    assert np.nanmedian(output[is_mbpp]) > 10 * np.nanmedian(output[~is_mbpp])


def test_routerbench_fitted_prices_reproduce_logged_costs(routerbench: ConvertedDataset) -> None:
    specs = {m.name: m for m in routerbench.models}
    assert set(specs) == ROUTERBENCH_MODELS
    assert specs["gpt-4-1106-preview"].litellm_model == "gpt-4-1106-preview"
    assert specs["gpt-4-1106-preview"].max_input_tokens == 128000
    assert specs["mistralai/mixtral-8x7b-chat"].litellm_model == "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1"
    for spec in specs.values():
        assert spec.input_cost_per_token > 0 and spec.output_cost_per_token > 0
    # Known list prices of the time, recovered to within 1%.
    assert specs["gpt-4-1106-preview"].input_cost_per_token == pytest.approx(10e-6, rel=0.01)
    assert specs["gpt-4-1106-preview"].output_cost_per_token == pytest.approx(30e-6, rel=0.01)
    assert specs["mistralai/mistral-7b-chat"].output_cost_per_token == pytest.approx(0.2e-6, rel=0.01)
    logs = routerbench.logs
    for name, spec in specs.items():
        cost = logs.matrix("cost", [name])[:, 0]
        predicted = (
            logs.matrix("input_tokens", [name])[:, 0] * spec.input_cost_per_token
            + logs.matrix("output_tokens", [name])[:, 0] * spec.output_cost_per_token
        )
        keep = ~np.isnan(cost)
        assert np.corrcoef(cost[keep], predicted[keep])[0, 1] ** 2 > 0.999, name
    assert "backed out from RouterBench's logged costs" in routerbench.notes
    assert routerbench.notes.count("R²=") == len(ROUTERBENCH_MODELS)


# ---- routerdc-7llm ----------------------------------------------------------------------------------------

ROUTERDC_MODELS = {
    "mistralai/Mistral-7B-v0.1",
    "meta-math/MetaMath-Mistral-7B",
    "itpossible/Chinese-Mistral-7B-v0.1",
    "HuggingFaceH4/zephyr-7b-beta",
    "cognitivecomputations/dolphin-2.6-mistral-7b",
    "meta-llama/Meta-Llama-3-8B",
    "cognitivecomputations/dolphin-2.9-llama3-8b",
}


def test_routerdc_records_and_score_semantics(routerdc: ConvertedDataset) -> None:
    # SOURCE.md: 20,600 rows, 20,565 distinct. 34 rows repeat a (task, question) pair and one ARC stem appears
    # in both arc_challenge and arc_easy; keeping each query text once gives 20,565.
    logs = routerdc.logs
    assert len(logs) == 20565
    _assert_well_formed(logs, "routerdc-")
    assert Counter(logs.tasks) == {
        "mmlu": 6189,
        "cmmlu": 5474,
        "arc_easy": 2370,
        "gsm8k": 2319,
        "ceval": 1345,
        "arc_challenge": 1170,
        "MATH_prealgebra": 871,
        "mbpp": 499,
        "humaneval": 164,
        "javascript": 164,
    }
    assert all(set(r.outcomes) == ROUTERDC_MODELS for r in logs)
    scores_by_task: dict[str, set[float]] = {}
    for record in logs:
        scores_by_task.setdefault(record.task or "", set()).update(o.score for o in record.outcomes.values())
    for task in ("mmlu", "cmmlu", "ceval", "arc_challenge", "arc_easy", "MATH_prealgebra"):
        assert scores_by_task[task] == {0.0, 1.0}, task
    for task in ("gsm8k", "humaneval", "mbpp", "javascript"):
        assert any(0 < s < 1 for s in scores_by_task[task]), task
    for attribute in ("output_tokens", "input_tokens", "cost"):
        assert np.isnan(logs.matrix(attribute, sorted(ROUTERDC_MODELS))).all()


def test_routerdc_prices_follow_the_stated_assumption(routerdc: ConvertedDataset) -> None:
    assert PRICE_ASSUMPTION in routerdc.notes
    specs = {m.name: m for m in routerdc.models}
    assert set(specs) == ROUTERDC_MODELS
    for name, spec in specs.items():
        expected = 0.20e-6 * (8.03 if "llama" in name.lower() else 7.24) / 8
        assert spec.input_cost_per_token == pytest.approx(expected) == spec.output_cost_per_token
        assert spec.litellm_model == f"hosted_vllm/{name}"


# ---- registry, convert(), bundled data --------------------------------------------------------------------


def test_registry_names_the_three_data_sets() -> None:
    assert set(CONVERTERS) == {LLMROUTER, ROUTERBENCH, ROUTERDC}


def test_unknown_data_set_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown data set 'nope'.*llmrouter-9llm.*routerdc-7llm"):
        convert("nope", tmp_path, tmp_path)


def test_missing_source_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "not-here"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        convert(LLMROUTER, missing, tmp_path)


def test_shared_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv(SHARED_DATA_ENV)
    assert shared_data_dir() == (Path(__file__).resolve().parent.parent / ".." / "shared" / "data").resolve()


def test_convert_writes_files_that_load_back(llmrouter: ConvertedDataset, tmp_path: Path) -> None:
    logs_path, models_path = convert(LLMROUTER, shared_data_dir() / LLMROUTER, tmp_path)
    assert logs_path == tmp_path / "llmrouter-9llm.jsonl.gz"
    assert models_path == tmp_path / "llmrouter-9llm.models.json"
    assert load_logs(logs_path) == llmrouter.logs
    assert load_models(models_path) == llmrouter.models


def test_bundled_data_equals_a_fresh_conversion(llmrouter: ConvertedDataset) -> None:
    assert BUNDLED_LOGS.is_file() and BUNDLED_MODELS.is_file()
    assert bundled_logs() == llmrouter.logs, "bundled logs are stale: run benchmarks/convert_data.py --bundle"
    assert bundled_models() == llmrouter.models
    license_text = (BUNDLED_LOGS.parent / "LICENSE-llmrouter-9llm.md").read_text(encoding="utf-8")
    assert "Copyright (c) 2024 U Lab @UIUC" in license_text
    assert "4e7a796942ce26e9d5f2b93191c7c2585c99c2e3" in license_text


def test_bundled_data_loads_without_the_shared_folder() -> None:
    logs, models = bundled_logs(), bundled_models()
    assert len(logs) == 5989
    assert set(logs.models) == {m.name for m in models} == LLMROUTER_MODELS


# ---- routing-log bad inputs (logs.py) ---------------------------------------------------------------------

GOOD = {"id": "q1", "query": "What is 2+2?", "task": "math", "outcomes": {"m1": {"score": 1.0}}}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_log_line_that_is_not_json_names_file_and_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "logs.jsonl", [json.dumps(GOOD), "{not json"])
    with pytest.raises(LogFormatError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        load_logs(path)


def test_log_outcome_without_score_names_the_model(tmp_path: Path) -> None:
    record = {**GOOD, "outcomes": {"gpt-x": {"output_tokens": 12}}}
    path = _write_lines(tmp_path / "logs.jsonl", [json.dumps(record)])
    with pytest.raises(LogFormatError, match=r"logs.jsonl:1: outcome of model 'gpt-x' lacks the required 'score'"):
        load_logs(path)


@pytest.mark.parametrize("score", [1.5, float("nan"), -0.1])
def test_log_score_outside_unit_interval_or_nan(tmp_path: Path, score: float) -> None:
    record = {**GOOD, "outcomes": {"m1": {"score": score}}}
    path = _write_lines(tmp_path / "logs.jsonl", [json.dumps(record)])  # json writes NaN as a bare NaN token
    with pytest.raises(LogFormatError, match=r"logs.jsonl:1: outcome of model 'm1'.*'score'"):
        load_logs(path)


def test_log_id_reused_for_another_query_is_an_error(tmp_path: Path) -> None:
    # lines sharing an id merge their outcomes (eccos collect appends one line per model); another query text
    # under the same id is a mistake
    path = _write_lines(tmp_path / "logs.jsonl", [json.dumps(GOOD), json.dumps({**GOOD, "query": "other"})])
    with pytest.raises(LogFormatError, match=r"logs.jsonl:2: id 'q1' has another query text than on line 1"):
        load_logs(path)


def test_log_gzip_round_trip(tmp_path: Path) -> None:
    from eccos_core.logs import write_logs

    logs = RoutingLogs((LogRecord(id="q1", query="What is 2+2?", outcomes={"m1": Outcome(1.0, 5, 7, 1e-6)}),))
    assert load_logs(write_logs(logs, tmp_path / "out.jsonl.gz")) == logs


# ---- models-file bad inputs (pricing.py) ------------------------------------------------------------------


def _models_file(tmp_path: Path, models: list[dict]) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path


def test_unpriced_unknown_model_says_how_to_price_it(tmp_path: Path) -> None:
    path = _models_file(tmp_path, [{"name": "my-local-llm", "litellm_model": "hosted_vllm/my-local-llm"}])
    with pytest.raises(PricingError, match=r"'my-local-llm'.*input_cost_per_token/output_cost_per_token"):
        load_models(path)


@pytest.mark.parametrize("price", [-1e-6, float("nan")])
def test_negative_or_nan_price(tmp_path: Path, price: float) -> None:
    path = _models_file(
        tmp_path, [{"name": "m1", "input_cost_per_token": price, "output_cost_per_token": 1e-6}]
    )  # json writes NaN as a bare NaN token, which json.loads accepts
    with pytest.raises(PricingError, match=r"model 'm1': input_cost_per_token"):
        load_models(path)


def test_duplicate_model_names(tmp_path: Path) -> None:
    entry = {"name": "m1", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}
    with pytest.raises(ConfigError, match=r"duplicate model names.*'m1'"):
        load_models(_models_file(tmp_path, [entry, entry]))


def test_empty_pool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_models(_models_file(tmp_path, []))


def test_yaml_models_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - name: small\n"
        "    litellm_model: hosted_vllm/small\n"
        "    input_cost_per_token: 1.0e-7\n"
        "    output_cost_per_token: 2.0e-7\n"
        "    capacity: 10\n"
        "  - name: gpt-4o-mini\n",  # priced from LiteLLM's bundled map
        encoding="utf-8",
    )
    small, mini = load_models(path)
    assert (small.name, small.input_cost_per_token, small.output_cost_per_token, small.capacity) == (
        "small",
        1e-7,
        2e-7,
        10,
    )
    assert mini.input_cost_per_token > 0 and mini.output_cost_per_token > 0
