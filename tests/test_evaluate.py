import json

import numpy as np
import pytest

from eccos_core.bundled import BUNDLED_MODELS, bundled_logs, bundled_models
from eccos_core.cli import main
from eccos_core.evaluate import default_alphas, evaluate, realized_cost
from eccos_core.logs import write_logs

POLICIES = {"eccos", "per-query", "random", "best-single", "knn", "oracle"}


@pytest.fixture(scope="module")
def small_logs():
    logs = bundled_logs()
    rng = np.random.default_rng(1)
    return logs.subset(sorted(rng.choice(len(logs), size=360, replace=False)))


def test_eval_cli_writes_every_policy_and_a_plot(small_logs, tmp_path, capsys):
    data = write_logs(small_logs, tmp_path / "logs.jsonl")
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["eval", "--data", str(data), "--models", str(BUNDLED_MODELS), "--alpha", "0.4", "0.55",
                 "--json", str(out), "--plot", str(plot)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    names = [m.name for m in bundled_models()]
    assert POLICIES | {f"model:{n}" for n in names} == set(result["policies"])
    assert [p["alpha"] for p in result["policies"]["eccos"]] == [0.4, 0.55]
    for point in result["policies"]["eccos"]:
        assert {"alpha", "success", "cost", "predicted_quality", "status", "met"} <= set(point)
    assert result["dataset"]["test_queries"] + result["dataset"]["train_queries"] == len(small_logs)
    assert "lambda" in result["policies"]["knn"][0]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "alpha" in printed and "oracle" in printed


def test_oracle_is_the_cheapest_way_to_each_success_level(small_logs):
    train, test = small_logs[:280], small_logs[280:]
    report = evaluate(train, test, bundled_models(), alphas=[0.3, 0.5, 0.6])
    for oracle, eccos in zip(report.policies["oracle"], report.policies["eccos"], strict=True):
        if oracle["status"] != "quality_unreachable":
            assert oracle["success"] >= oracle["alpha"] - 1e-9
            # eccos routes on predictions; with the truth the same optimizer can only be cheaper for as much success
            if eccos["success"] <= oracle["success"]:
                assert oracle["cost"] <= eccos["cost"] + 1e-12
    assert len(report.comparison) == 3


def test_realized_cost_prefers_logged_cost_over_prices(small_logs):
    models = bundled_models()
    tokens = np.full(len(small_logs), 100.0)
    cost = realized_cost(small_logs, models, tokens)
    # the bundled logs carry no cost and no output tokens: input tokens × input price
    np.testing.assert_allclose(cost[0], [100.0 * m.input_cost_per_token for m in models])


def test_default_alphas_cover_the_single_models_range():
    alphas = default_alphas(np.array([0.31, 0.62]))
    assert alphas[0] == pytest.approx(0.32) and alphas[-1] == pytest.approx(0.68)


def test_eval_cli_reports_a_bad_log_line_and_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "query": "q", "outcomes": {"m": {"score": 1}}}\nnot json\n')
    assert main(["eval", "--data", str(bad)]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
