"""Every door routes single calls at about the price of one joint batch: measured through the real client path.

Run by hand from the repo root (after ``python benchmarks/convert_data.py``, which makes ``benchmarks/data/``):

    export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1
    python benchmarks/bench_shells.py --cache /tmp/eccos-bench-cache                       # full run
    python benchmarks/bench_shells.py --sets llmrouter-9llm --n 30 --alphas 0.6            # quick check
    python benchmarks/bench_shells.py --summary-only                                       # re-summarise

Per data set (fixed split ``split_logs(logs, test_frac=0.2, seed=0)``): fits ``Router.fit(models, train,
RetrievalPredictor(k=16))`` on the train split (or loads it from ``--cache DIR``, the layout ``bench_dual.py``
uses, refitting the per-call prices of a router cached before they existed), re-points every pool model at a
loopback OpenAI-compatible server (``tests/loopback.py``, run in a thread of this process on 127.0.0.1; each
``ModelSpec`` keeps its name, prices, limits and capabilities, with ``litellm_model="openai/<name>"`` and that
server's ``api_base`` / ``api_key``), and takes the first ``--n`` held-out queries in shuffled order (the test
split is stored grouped by task, so it is shuffled with ``np.random.default_rng(0).permutation``, the order
``eccos eval`` routes it in; like ``eccos eval``, only queries with a logged outcome for every pool model). At
each α it routes them through:

- ``joint``: one ``ChatECCOS(router=router, min_quality=α).batch(queries)`` (one optimizer call);
- one call at a time, in the same order, each door starting from ``router.reset_dual(α)``:
  ``invoke`` (``ChatECCOS.invoke``, default ``policy="dual"``), ``stream`` (``ChatECCOS.stream``, every chunk
  consumed; the model from the aggregated message's ``response_metadata["eccos"]``), ``llamaindex``
  (``ECCOSLLM.complete``; ``additional_kwargs["eccos"]["model"]``), ``middleware`` (a real
  ``langchain.agents.create_agent`` agent with ``ECCOSMiddleware``, no tools, whose chat models are plain
  LiteLLM-backed chat models, one per pool model, all pointed at the loopback server; one ``agent.invoke`` per
  query, the model from the answer's ``response_metadata["eccos"]``) and ``core`` (``Router.complete``).

Every call goes through LiteLLM to the loopback server, whose reply names the model it was asked for: the
``served`` column checks that the models the server saw are the models the door reported (in order for single
calls, as a multiset for the concurrent joint batch). Scored with the logged outcomes: success = mean logged
score of (query, picked model); cost as ``eccos eval`` computes it (``eccos_core.evaluate.realized_cost``: the
logged cost, else tokens × prices, prompt tokens counted with ``count_text_tokens``). Targets reported (PASS /
MISS, never asserted): every single-call door costs ≤ 1.10× the joint batch, reaches success ≥ α − 1 pt, and
picks exactly what ``Router.complete`` picks. Wall times include the in-process server and are from a shared
2-core machine (load averages recorded).

Cost of a full run on a shared 2-core CPU machine: about 23 min of routing (18 door runs of 300 calls per set)
plus, without a warm ``--cache``, the fits (routerdc-7llm alone about 14 min). Nothing is sampled: every door
routes all ``--n`` queries at every α.

Writes ``benchmarks/results/shells-<set>.{json,txt}`` and ``shells-summary.{json,txt}`` (the summary covers
every set whose results file exists).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from bench_dual import fitted_router  # the same fitted (and cached) router as bench_dual.py

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SETS = ("llmrouter-9llm", "routerbench-routerdc-subset", "routerdc-7llm")
DEFAULT_ALPHAS = {  # inside the range each router reaches (benchmarks/results/dual-<set>.txt)
    "llmrouter-9llm": (0.56, 0.58, 0.60),
    "routerbench-routerdc-subset": (0.60, 0.70, 0.80),
    "routerdc-7llm": (0.52, 0.54, 0.56),
}
DOORS = ("joint", "invoke", "stream", "llamaindex", "middleware", "core")
SINGLE = DOORS[1:]
API_KEY = "sk-loopback-bench"
MAX_RATIO = 1.10
TOLERANCE = 0.01


# --------------------------------------------------------------------------------------------- setup
def machine() -> dict[str, Any]:
    """Where the run happened."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "note": "shared 2-core machine: other processes were running; see load averages",
    }


@contextmanager
def loopback() -> Iterator[Any]:
    """The loopback OpenAI-compatible provider of the test suite (``tests/loopback.py``), on 127.0.0.1."""
    path = ROOT.parent / "tests" / "loopback.py"
    spec = importlib.util.spec_from_file_location("eccos_bench_loopback", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    with module.serve_loopback() as provider:
        yield provider


def repointed(router: Any, api_base: str) -> Any:
    """The same router (predictor, guard, per-call prices, margin) with every pool model on the loopback server."""
    from eccos_core.pricing import ModelSpec

    local = {"api_base": api_base, "api_key": API_KEY}
    pool = [
        ModelSpec(**{**spec.to_dict(), "litellm_model": f"openai/{spec.name}", "litellm_params": local})
        for spec in router.models
    ]
    return router.with_models(pool)


def held_out(test: Any, names: list[str], n: int) -> Any:
    """The first ``n`` held-out queries with a logged outcome for every pool model, in shuffled held-out order.

    ``split_logs`` keeps the test split in log order (grouped by task), so it is shuffled first, in the order
    ``eccos eval`` routes it (``np.random.default_rng(0).permutation``).
    """
    complete = np.flatnonzero(~np.isnan(test.scores(names)).any(axis=1))
    order = np.random.default_rng(0).permutation(len(complete))
    return test.subset(complete[order[:n]])


# ------------------------------------------------------------------------------ the agent's chat models
@functools.cache
def _chat_class() -> type:
    """A plain LiteLLM-backed LangChain chat model class (defined on first use: LangChain loads lazily)."""
    import litellm
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, convert_to_openai_messages
    from langchain_core.outputs import ChatGeneration, ChatResult
    from pydantic import Field

    class LiteLLMChat(BaseChatModel):
        """One model, called through ``litellm.completion`` with its own endpoint."""

        litellm_model: str
        params: dict[str, Any] = Field(default_factory=dict)

        @property
        def _llm_type(self) -> str:
            return "litellm-loopback"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            """One ``litellm.completion`` call to this model's endpoint."""
            reply = litellm.completion(
                model=self.litellm_model, messages=convert_to_openai_messages(messages), **self.params, **kwargs
            )
            usage = reply.usage
            message = AIMessage(
                content=reply.choices[0].message.content or "",
                usage_metadata={
                    "input_tokens": usage.prompt_tokens,
                    "output_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
                response_metadata={"model_name": reply.model},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

    return LiteLLMChat


def loopback_chat_model(spec: Any) -> Any:
    """One pool model as a chat model of its own (what a user would hand the middleware), on its endpoint."""
    return _chat_class()(litellm_model=spec.litellm_model, params=dict(spec.litellm_params))


# -------------------------------------------------------------------------------------------- doors
@dataclass
class Door:
    """What one door picked for the queries, and the models the loopback server was asked for meanwhile."""

    picks: list[str]
    served: list[str]
    wall_s: float
    statuses: dict[str, int] = field(default_factory=dict)


def door_joint(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """One ``ChatECCOS.batch`` of every query: the joint plan."""
    from langchain_eccos import ChatECCOS

    replies = ChatECCOS(router=router, min_quality=alpha).batch(queries)
    metas = [r.response_metadata["eccos"] for r in replies]
    return [m["model"] for m in metas], [m["status"] for m in metas]


def door_invoke(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """``ChatECCOS.invoke`` per query."""
    from langchain_eccos import ChatECCOS

    model = ChatECCOS(router=router, min_quality=alpha)
    metas = [model.invoke(q).response_metadata["eccos"] for q in queries]
    return [m["model"] for m in metas], [m["status"] for m in metas]


def door_stream(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """``ChatECCOS.stream`` per query, every chunk consumed; the decision is on the aggregated message."""
    from langchain_eccos import ChatECCOS

    model = ChatECCOS(router=router, min_quality=alpha)
    metas = []
    for query in queries:
        message = None
        for chunk in model.stream(query):
            message = chunk if message is None else message + chunk
        assert message is not None, "the stream sent nothing"
        metas.append(message.response_metadata["eccos"])
    return [m["model"] for m in metas], [m["status"] for m in metas]


def door_llamaindex(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """``ECCOSLLM.complete`` per query."""
    from llamaindex_eccos import ECCOSLLM

    llm = ECCOSLLM(router=router, min_quality=alpha)
    metas = [llm.complete(q).additional_kwargs["eccos"] for q in queries]
    return [m["model"] for m in metas], [m["status"] for m in metas]


def door_middleware(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """A real ``create_agent`` agent with ``ECCOSMiddleware`` over one LiteLLM chat model per pool model."""
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage

    from langchain_eccos import ECCOSMiddleware

    chat_models = {spec.name: loopback_chat_model(spec) for spec in router.models}
    middleware = ECCOSMiddleware(chat_models, router=router, min_quality=alpha)
    agent = create_agent(next(iter(chat_models.values())), tools=[], middleware=[middleware])
    metas = []
    for query in queries:
        state = agent.invoke({"messages": [HumanMessage(query)]})
        metas.append(state["messages"][-1].response_metadata["eccos"])
    return [m["model"] for m in metas], [m["status"] for m in metas]


def door_core(router: Any, queries: list[str], alpha: float) -> tuple[list[str], list[str]]:
    """``Router.complete`` per query."""
    replies = [router.complete(q, alpha) for q in queries]
    return [r.model for r in replies], [r.status for r in replies]


ROUTES: dict[str, Callable[[Any, list[str], float], tuple[list[str], list[str]]]] = {
    "joint": door_joint,
    "invoke": door_invoke,
    "stream": door_stream,
    "llamaindex": door_llamaindex,
    "middleware": door_middleware,
    "core": door_core,
}


def run_door(door: str, router: Any, provider: Any, queries: list[str], alpha: float) -> Door:
    """Route the queries through one door from a fresh per-call stream; what the server saw meanwhile."""
    router.reset_dual(alpha)
    provider.clear()
    started = time.perf_counter()
    picks, statuses = ROUTES[door](router, queries, alpha)
    wall = time.perf_counter() - started
    return Door(picks, provider.models_called(), wall, dict(Counter(str(s) for s in statuses)))


# ------------------------------------------------------------------------------------------ scoring
def score(test: Any, models: Any, picks: list[str]) -> tuple[float, float]:
    """Mean logged success and total cost (as ``eccos eval``: logged cost, else tokens × prices) of the picks."""
    from eccos_core.evaluate import realized_cost
    from eccos_core.messages import count_text_tokens

    names = [m.name for m in models]
    rows = np.arange(len(picks))
    columns = np.array([names.index(p) for p in picks])
    tokens = np.array([count_text_tokens(q) for q in test.queries], dtype=float)
    success = test.scores(names)[rows, columns]
    cost = realized_cost(test, models, tokens)[rows, columns]
    return float(success.mean()), float(cost.sum())


def measure(name: str, router: Any, provider: Any, test: Any, alpha: float) -> list[dict[str, Any]]:
    """Every door at one α: one row each, with cost vs the joint batch and picks vs ``Router.complete``."""
    queries = list(test.queries)
    results = {door: run_door(door, router, provider, queries, alpha) for door in DOORS}
    core = results["core"].picks
    joint_cost = score(test, router.models, results["joint"].picks)[1]
    reachable = "quality_unreachable" not in results["joint"].statuses
    rows = []
    for door, result in results.items():
        success, cost = score(test, router.models, result.picks)
        served = Counter(result.served) == Counter(result.picks) if door == "joint" else result.served == result.picks
        rows.append(
            {
                "set": name,
                "alpha": alpha,
                "door": door,
                "n": len(queries),
                "cost": cost,
                "cost_vs_joint": cost / joint_cost if joint_cost else float("nan"),
                "success": success,
                "met": success >= alpha - TOLERANCE,
                "joint_reachable": reachable,
                "identical_to_core": sum(a == b for a, b in zip(result.picks, core, strict=True)),
                "served_matches": served,
                "statuses": result.statuses,
                "wall_s": round(result.wall_s, 2),
                "picks": result.picks,
            }
        )
        print(format_rows(rows[-1:], header=False), flush=True)
    return rows


# ------------------------------------------------------------------------------------------- output
def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    """The per-set table: door × α."""
    lines = (
        [
            f"{'alpha':>5} {'door':<10} {'n':>4} {'$/joint':>8} {'success':>8} {'α met':>6} "
            f"{'=core':>8} {'served':>6} {'wall s':>7}  statuses",
            "-" * 96,
        ]
        if header
        else []
    )
    for r in rows:
        lines.append(
            f"{r['alpha']:>5.2f} {r['door']:<10} {r['n']:>4} {r['cost_vs_joint']:>8.3f} {r['success']:>8.3f} "
            f"{'yes' if r['met'] else 'NO':>6} {str(r['identical_to_core']) + '/' + str(r['n']):>8} "
            f"{'ok' if r['served_matches'] else 'NO':>6} {r['wall_s']:>7.1f}  "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        )
    return "\n".join(lines)


def evaluate_set(name: str, args: argparse.Namespace, provider: Any) -> None:
    """Fit (or load), re-point, route at every α through every door; write ``shells-<name>.{json,txt}``."""
    started = time.perf_counter()
    info = machine()
    fitted, _, _, test = fitted_router(name, args.cache)  # bench_dual.py's router and cache
    fit_s = time.perf_counter() - started
    router = repointed(fitted, provider.api_base)
    test = held_out(test, [m.name for m in router.models], args.n)
    alphas = args.alphas or DEFAULT_ALPHAS[name]
    print(f"{name}: router ready in {fit_s:.0f} s; {len(test)} held-out queries, α {list(alphas)}", flush=True)
    rows = [row for alpha in alphas for row in measure(name, router, provider, test, alpha)]
    info["load_average_at_end"] = os.getloadavg()
    total = time.perf_counter() - started
    report = {"set": name, "machine": info, "n": len(test), "alphas": list(alphas), "router_s": fit_s}
    report.update({"wall_s": total, "rows": rows})
    (RESULTS / f"shells-{name}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = "\n".join(
        [
            f"{name}: {len(test)} held-out queries, each door from router.reset_dual(α); loopback provider",
            f"machine: {info}",
            "",
            format_rows(rows),
            "",
            "$/joint: realized (logged) cost over the joint ChatECCOS.batch's; α met: success ≥ α − 1 pt;",
            "=core: picks identical to Router.complete's; served: the loopback server was asked for those models",
            f"(router {fit_s:.0f} s, total {total:.0f} s)",
        ]
    )
    (RESULTS / f"shells-{name}.txt").write_text(text + "\n", encoding="utf-8")
    print(text, flush=True)


def summary_rows(sets: list[str]) -> list[dict[str, Any]]:
    """Per set and door: worst cost ratio, worst success − α, α met, identical picks."""
    out = []
    for name in sets:
        path = RESULTS / f"shells-{name}.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        for door in DOORS:
            rows = [r for r in report["rows"] if r["door"] == door]
            out.append(
                {
                    "set": name,
                    "door": door,
                    "n": report["n"],
                    "alphas": [r["alpha"] for r in rows],
                    "worst_cost_vs_joint": max(r["cost_vs_joint"] for r in rows),
                    "worst_success_minus_alpha": min(r["success"] - r["alpha"] for r in rows),
                    "met": sum(r["met"] for r in rows),
                    "unreachable": sum(not r["joint_reachable"] for r in rows),
                    "met_where_reachable": all(r["met"] for r in rows if r["joint_reachable"]),
                    "identical": all(r["identical_to_core"] == r["n"] for r in rows),
                    "identical_picks": sum(r["identical_to_core"] for r in rows),
                    "served_ok": all(r["served_matches"] for r in rows),
                    "wall_s": sum(r["wall_s"] for r in rows),
                }
            )
    return out


def summarize(sets: list[str]) -> None:
    """Write ``shells-summary.{json,txt}``: per door the worst ratio and whether it met the targets."""
    rows = summary_rows(sets)
    lines = [
        f"{'set':<28} {'door':<10} {'n':>4} {'α':<16} {'$/joint max':>11} {'succ-α min':>10} {'met':>5} "
        f"{'=core':>10} {'served':>6} {'wall s':>7}",
        "-" * 116,
    ]
    for r in rows:
        k = len(r["alphas"])
        alphas = ",".join(f"{a:.2f}" for a in r["alphas"])
        lines.append(
            f"{r['set']:<28} {r['door']:<10} {r['n']:>4} {alphas:<16} {r['worst_cost_vs_joint']:>11.3f} "
            f"{r['worst_success_minus_alpha']:>+10.3f} {r['met']:>2}/{k:<2} "
            f"{str(r['identical_picks']) + '/' + str(r['n'] * k):>10} {'ok' if r['served_ok'] else 'NO':>6} "
            f"{r['wall_s']:>7.0f}"
        )
    single = [r for r in rows if r["door"] in SINGLE]
    reach = [r["met_where_reachable"] for r in rows]
    skipped = sum(r["unreachable"] for r in rows if r["door"] == "joint")
    lines += ["", "worst over sets, per door:"]
    for door in DOORS:
        mine = [r for r in rows if r["door"] == door]
        if mine:
            lines.append(
                f"  {door:<10} $/joint max {max(r['worst_cost_vs_joint'] for r in mine):.3f}   "
                f"succ-α min {min(r['worst_success_minus_alpha'] for r in mine):+.3f}   "
                f"identical to core: {'yes' if all(r['identical'] for r in mine) else 'no'}"
            )
    checks = [
        (
            f"single-call doors cost ≤ {MAX_RATIO:.2f}× joint",
            all(r["worst_cost_vs_joint"] <= MAX_RATIO for r in single),
        ),
        ("every door reaches success ≥ α − 1 pt (at α the joint batch reaches)", all(met for met in reach)),
        ("all single-call doors identical to Router.complete", all(r["identical"] for r in single)),
        ("the loopback server was asked for the reported models", all(r["served_ok"] for r in rows)),
    ]
    lines += ["", "targets:"] + [f"  {'PASS' if ok else 'MISS'}  {label}" for label, ok in checks]
    if skipped:
        lines.append(f"  ({skipped} (set, α) left out of the success target: the joint batch was quality_unreachable)")
    (RESULTS / "shells-summary.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "shells-summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    """Parse the arguments, start the loopback provider, run the sets, summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), help="data sets to run (default: all three)")
    parser.add_argument("--n", type=int, default=300, help="held-out queries routed per α (default 300)")
    parser.add_argument("--alphas", type=float, nargs="+", help="min_quality values (default: 3 per set)")
    parser.add_argument("--cache", type=Path, help="directory to keep fitted routers in between runs")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the results already written")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        import litellm

        litellm.suppress_debug_info = True
        started = time.perf_counter()
        with loopback() as provider:
            for name in args.sets:
                evaluate_set(name, args, provider)
        print(f"all sets: {time.perf_counter() - started:.0f} s", flush=True)
    summarize(list(SETS))


if __name__ == "__main__":
    main()
