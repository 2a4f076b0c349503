"""Command line: ``eccos demo``, ``eccos eval``, ``eccos train``, ``eccos convert`` and ``eccos collect``.

The CLI is the only place that prints; the library logs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eccos_core.errors import EccosError

if TYPE_CHECKING:
    from eccos_core.collect import CollectReport, ModelTally
    from eccos_core.evaluate import EvalReport
    from eccos_core.predictors.base import Prediction
    from eccos_core.router import Router


def _number(text: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def _open_fraction(text: str) -> float:
    """A fraction strictly between 0 and 1 (checked while parsing, before any fit starts)."""
    value = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _unit(text: str) -> float:
    """A number in [0, 1], such as a min_quality."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1] (a mean success rate), got {text}")
    return value


def _positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


_KINDS = ("retrieval", "trained", "fused", "mlp", "mf")
"""Predictor kinds offered by ``eval --predictor`` and ``train --predictor`` (eccos_core.predictors.KINDS)."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eccos", description="Cost-aware LLM routing (ECCOS) over LiteLLM.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="evaluate the bundled default router on the bundled held-out split")
    demo.add_argument("--json", type=Path, help="write the full results as JSON here")
    demo.add_argument("--plot", type=Path, help="write a cost-vs-success PNG here")

    ev = sub.add_parser("eval", help="fit on a train split of routing logs and evaluate every policy")
    ev.add_argument("--data", type=Path, required=True, help="routing logs (.jsonl or .jsonl.gz)")
    ev.add_argument("--models", type=Path, help="models file (JSON/YAML); default: LiteLLM prices by name")
    ev.add_argument("--test-frac", type=_open_fraction, default=0.2, help="held-out fraction (default 0.2)")
    ev.add_argument("--seed", type=int, default=0, help="split and batch-order seed (default 0)")
    ev.add_argument("--alpha", type=_unit, nargs="+", help="min_quality values (default: the feasible range)")
    ev.add_argument("--batch-size", type=_positive_int, help="queries routed jointly (default: the whole test split)")
    ev.add_argument("--k", type=_positive_int, default=16, help="neighbours of the retrieval predictor (default 16)")
    ev.add_argument("--no-guard", action="store_true", help="route on calibrated predictions without the guard")
    ev.add_argument("--predictor", choices=_KINDS, default="retrieval", help="predictor to fit (default retrieval)")
    ev.add_argument(
        "--confidence",
        type=_open_fraction,
        help="also evaluate guarantee mode: per alpha, the share of 200 random test batches (of --batch-size, "
        "default 100) whose realized success reached alpha, routed as Router.plan(..., confidence=) routes them",
    )
    ev.add_argument("--json", type=Path, help="write the full results as JSON here")
    ev.add_argument("--plot", type=Path, help="write a cost-vs-success PNG here")
    ev.add_argument(
        "--replay",
        action="store_true",
        help="also route the test split one query at a time in a random order at the per-call price "
        "(policy 'dual-replay'), and each query alone ('strict')",
    )
    ev.add_argument(
        "--replay-sorted", action="store_true", help="also replay it one at a time sorted by task (a traffic shift)"
    )
    ev.add_argument("--budget", action="store_true", help="also evaluate budget mode over a grid of total budgets")
    ev.add_argument("--streams-plot", type=Path, help="write a PNG of the batch, budget and replay curves here")

    tr = sub.add_parser("train", help="fit a router (predictor and quality guard) on routing logs and save it")
    tr.add_argument("--data", type=Path, required=True, help="routing logs (.jsonl or .jsonl.gz)")
    tr.add_argument("--models", type=Path, help="models file (JSON/YAML); default: LiteLLM prices by name")
    tr.add_argument("--out", type=Path, required=True, help="directory to save the router into (Router.load reads it)")
    tr.add_argument("--predictor", choices=_KINDS, default="fused", help="predictor to fit (default fused)")
    tr.add_argument("--epochs", type=_positive_int, help="most epochs per fold of a trained predictor (default 100)")
    tr.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    tr.add_argument("--k", type=_positive_int, default=16, help="neighbours of the retrieval part (default 16)")

    sub.add_parser(
        "build-default", help="refit the default router on the bundled training split and write it into the package"
    )

    conv = sub.add_parser("convert", help="convert a public routing data set into eccos routing logs")
    conv.add_argument("name", help="data set name (llmrouter-9llm, routerbench-routerdc-subset, routerdc-7llm)")
    conv.add_argument("source", type=Path, help="folder holding the data set's original files")
    conv.add_argument("out", type=Path, help="folder to write <name>.jsonl.gz and <name>.models.json into")

    _add_collect(sub)
    _add_onboard(sub)
    return parser


def _add_collect(sub: Any) -> None:
    col = sub.add_parser("collect", help="ask every pool model every question, grade the answers, write routing logs")
    col.add_argument(
        "--questions", type=Path, required=True, help='JSONL, one {"id", "query", "answer"[, "task"]} per line'
    )
    col.add_argument("--models", type=Path, required=True, help="models file (JSON/YAML) naming the pool")
    col.add_argument("--out", type=Path, required=True, help="routing log to append to (.jsonl); run again to resume")
    col.add_argument(
        "--grader",
        choices=["mcq", "numeric", "exact", "contains", "f1", "judge"],
        default="exact",
        help="how answers are scored (default exact; a question's own 'grader' field overrides it)",
    )
    col.add_argument("--judge-model", metavar="NAME", help="models-file model that grades for the judge grader")
    col.add_argument("--judge-prompt", type=Path, help="file with the judge's prompt: {query}, {answer}, {response}")
    col.add_argument("--only", nargs="+", metavar="NAME", help="collect only these models of the models file")
    col.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
    col.add_argument("--max-tokens", type=int, help="cap on each answer's length (also tightens the spend limit)")
    col.add_argument("--limit-usd", type=float, help="start no call that could take this run's spend past X USD")
    col.add_argument("--retries", type=int, default=2, help="LiteLLM retries per call (default 2)")


def _add_onboard(sub: Any) -> None:
    onb = sub.add_parser(
        "onboard",
        help="join a model without logs to a router: ask it the shipped probe (or read its graded answers), fit it",
    )
    onb.add_argument("--model", required=True, metavar="NAME", help="the new model (its entry in --models)")
    onb.add_argument("--models", type=Path, required=True, help="models file (JSON/YAML) with the new model")
    onb.add_argument("--n", type=int, default=200, help="probe questions to ask (default 200; 0: ask none)")
    onb.add_argument(
        "--probe",
        type=Path,
        help="routing log of its graded answers: appended to and resumed (default <out>.probe.jsonl); with --n 0, "
        "read as it is (e.g. from eccos collect on your own questions)",
    )
    onb.add_argument("--router", type=Path, help="saved router to join it to (default: the bundled one)")
    onb.add_argument("--out", type=Path, required=True, help="directory to save the joined router into")
    onb.add_argument("--concurrency", type=int, default=8, help="probe calls in flight at once (default 8)")
    onb.add_argument("--max-tokens", type=int, help="cap on each answer's length (also tightens the spend limit)")
    onb.add_argument("--limit-usd", type=float, help="start no probe call that could take the spend past X USD")
    onb.add_argument("--retries", type=int, default=2, help="LiteLLM retries per call (default 2)")


def _print_report(report: EvalReport, started: float) -> None:
    from eccos_core.evaluate import format_table

    ds = report.dataset
    print(f"\n{ds['name']}: fitted on {ds['train_queries']} queries, routed {ds['test_queries']} held-out queries")
    print(f"pool: {', '.join(ds['models'])}\n")
    print(format_table(report))
    accepted = [r for r in report.comparison if r["status"] != "quality_unreachable"]
    met = sum(r["met"] for r in accepted)
    print(
        f"\nrealized success within 1 point of alpha or above at {met}/{len(accepted)} alphas the router accepted; "
        f"{len(report.comparison) - len(accepted)} more were beyond what it can promise (quality_unreachable)"
    )
    print("costs are USD for the whole held-out split; 'same succ' = cheapest point reaching eccos's success")
    print(f"({time.time() - started:.1f} s)")


def _finish(report: EvalReport, args: argparse.Namespace) -> None:
    if args.json:
        print(f"results written to {report.write_json(args.json)}")
    if args.plot:
        print(f"plot written to {report.plot(args.plot)}")


def _demo(args: argparse.Namespace) -> int:
    from eccos_core.bundled import bundled_logs, bundled_models
    from eccos_core.evaluate import evaluate
    from eccos_core.logs import split_logs
    from eccos_core.router import Router

    started = time.time()
    print("loading the default router...", file=sys.stderr, flush=True)
    router = Router.default()
    train, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    prediction = _held_out_prediction(router, test.queries)
    report = evaluate(
        train,
        test,
        bundled_models(),
        router=router,
        progress=True,
        name="llmrouter-9llm (bundled)",
        prediction=prediction,
    )
    _print_report(report, started)
    _finish(report, args)
    return 0


def _held_out_prediction(router: Router, queries: list[str]) -> Prediction:
    """The default router's predictions for the bundled held-out split, cached on disk after the first demo.

    Embedding the 1,199 held-out queries is most of a demo's time; the cache is keyed by the queries and the
    router's fitted state, kept as ``.npz`` (no pickle) under the eccos cache directory, and rebuilt when unusable.
    """
    import hashlib

    import numpy as np

    from eccos_core.default_router import cache_root
    from eccos_core.predictors.base import Prediction

    digest = hashlib.sha256("\x00".join(queries).encode("utf-8", "replace"))
    digest.update(repr((router.planner.names, router.guard.to_dict())).encode())
    path = cache_root() / f"demo-prediction-{digest.hexdigest()[:16]}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            if data["quality"].shape == (len(queries), len(router.planner.names)):
                return Prediction(router.planner.names, data["quality"], data["output_tokens"])
    except (OSError, ValueError, KeyError):
        pass
    prediction = router.predict(queries)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp.npz")
        np.savez(staging, quality=prediction.quality, output_tokens=prediction.output_tokens)
        os.replace(staging, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next demo the embedding time
    return prediction


def _eval(args: argparse.Namespace) -> int:
    from eccos_core.errors import InputError
    from eccos_core.evaluate import evaluate
    from eccos_core.logs import load_logs, split_logs
    from eccos_core.predictors import make_predictor
    from eccos_core.pricing import ModelSpec, load_models, validate_pool
    from eccos_core.router import Router

    if args.confidence is not None and args.no_guard:
        raise InputError(
            "--confidence needs the quality guard (the batch margin is measured against it): drop --no-guard"
        )
    started = time.time()
    logs = load_logs(args.data)
    models = load_models(args.models) if args.models else validate_pool(ModelSpec(name) for name in logs.models)
    train, test = split_logs(logs, test_frac=args.test_frac, seed=args.seed)
    predictor = make_predictor(args.predictor, k=args.k, show_progress=True, seed=args.seed)
    # --no-guard: no targets are fitted (identity guard, no per-call curve): min_quality bounds predicted success
    router = Router.fit(models, train, predictor, calibrate=not args.no_guard)
    name = Path(args.data).name.removesuffix(".gz").removesuffix(".jsonl")
    report = evaluate(
        train,
        test,
        models,
        router=router,
        alphas=args.alpha,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=True,
        name=name,
        replay=args.replay,
        replay_sorted=args.replay_sorted,
        budget=args.budget,
    )
    _print_report(report, started)
    _finish(report, args)
    _print_streams(report, args)
    if args.confidence is not None:
        _print_guarantee(router, train, test, args)
    return 0


def _print_streams(report: EvalReport, args: argparse.Namespace) -> None:
    from eccos_core.evaluate import format_streams, plot_streams

    if args.replay or args.replay_sorted or args.budget:
        print("\nsingle calls and budgets (costs: USD for the whole held-out split; 'x batch' = cost / batch plan's)\n")
        print(format_streams(report))
    if args.streams_plot:
        print(f"plot written to {plot_streams(report, args.streams_plot)}")


def _print_guarantee(router: Any, train: Any, test: Any, args: argparse.Namespace) -> None:
    from eccos_core.evaluate import evaluate_guarantee, format_guarantee

    size = args.batch_size or 100
    rows = evaluate_guarantee(
        router, train, test, confidence=args.confidence, batch_size=size, alphas=args.alpha, seed=args.seed,
        progress=True,
    )  # fmt: skip
    print()
    print(format_guarantee(rows, args.confidence, size))
    print(
        "share = fraction of 200 random test batches whose realized success reached alpha; premium = extra mean "
        "cost per batch of guarantee mode over plain mode"
    )
    if args.json:
        import json

        data = json.loads(args.json.read_text(encoding="utf-8"))
        data["guarantee"] = {"confidence": args.confidence, "batch_size": size, "rows": rows}
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _train(args: argparse.Namespace) -> int:
    from eccos_core.logs import load_logs
    from eccos_core.predictors import make_predictor
    from eccos_core.pricing import ModelSpec, load_models, validate_pool
    from eccos_core.router import Router

    started = time.time()
    logs = load_logs(args.data)
    models = load_models(args.models) if args.models else validate_pool(ModelSpec(name) for name in logs.models)
    options: dict[str, Any] = {"seed": args.seed} if args.predictor != "retrieval" else {}
    if args.epochs is not None and args.predictor != "retrieval":
        options["max_epochs"] = args.epochs
    predictor = make_predictor(args.predictor, k=args.k, show_progress=True, **options)
    print(f"training a {args.predictor} router on {len(logs)} queries, {len(models)} models...", flush=True)
    router = Router.fit(models, logs, predictor)
    path = router.save(args.out)
    trained = getattr(predictor, "trained", predictor)
    for k, fold in enumerate(getattr(trained, "history", [])):
        label = f"fold {int(fold.get('fold', k)) + 1}" + (f" net {int(fold['member']) + 1}" if "member" in fold else "")
        print(
            f"{label}: best epoch {int(fold['epoch']) + 1} of {int(fold['epochs_run'])}, validation AUROC "
            f"{fold['val_auroc']:.4f}, {fold['seconds']:.1f} s"
        )
    if hasattr(predictor, "gamma"):
        print(f"fused: quality weight of the trained part {predictor.gamma:.2f}, token weight {predictor.delta:.2f}")
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    print(f"router saved to {path} ({size / 1e6:.1f} MB) in {time.time() - started:.1f} s")
    return 0


class _Bars:
    """One progress bar per model on stderr, with the USD spent on it so far."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def start(self, tallies: Mapping[str, ModelTally]) -> None:
        from tqdm.auto import tqdm

        width = max(len(name) for name in tallies)
        for position, (name, tally) in enumerate(tallies.items()):
            self.bars[name] = tqdm(
                total=tally.total, initial=tally.already, desc=name.ljust(width), position=position, file=sys.stderr
            )
            self.bars[name].set_postfix_str("$0", refresh=False)

    def advance(self, model: str, tally: ModelTally) -> None:
        bar = self.bars[model]
        bar.n = tally.already + tally.written
        failed = f" failed {tally.failed}" if tally.failed else ""
        bar.set_postfix_str(f"${tally.cost:.4g}{failed}{' (gave up)' if tally.gave_up else ''}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _collect(args: argparse.Namespace) -> int:
    from eccos_core.collect import collect, load_questions
    from eccos_core.graders import GRADERS, make_grader
    from eccos_core.pricing import load_models

    pool = load_models(args.models)
    prompt = args.judge_prompt.read_text(encoding="utf-8") if args.judge_prompt else None
    graders = {
        name: make_grader(name, pool=pool, judge_model=args.judge_model, judge_prompt=prompt, num_retries=args.retries)
        for name in GRADERS
        if name != "judge" or args.judge_model or args.grader == "judge"
    }
    questions = load_questions(args.questions, graders, default=args.grader)
    bars = _Bars()
    try:
        report = collect(
            questions,
            pool,
            args.out,
            graders[args.grader],
            models=args.only,
            graders=graders,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            limit_usd=args.limit_usd,
            num_retries=args.retries,
            progress=bars,
        )
    except KeyboardInterrupt:
        bars.close()
        print(f"\ninterrupted: every finished answer is in {args.out}; run the same command again to resume")
        return 130
    bars.close()
    _print_collect(report, args)
    return 0 if report.complete else 1


def _print_collect(report: CollectReport, args: argparse.Namespace) -> None:
    judge = f" (judge ${report.judge_cost:.4f})" if report.judge_cost else ""
    print(
        f"\n{report.out}: {report.lines_written} lines written in {report.wall_s:.1f} s, "
        f"spent ${report.spent_usd:.4f}{judge}"
    )
    if report.torn_bytes:
        print(f"an unfinished last line ({report.torn_bytes} bytes) left by a stopped run was cut off and asked again")
    width = max(len(name) for name in report.tallies)
    print(f"{'model'.ljust(width)}  {'before':>7} {'new':>6} {'failed':>7} {'missing':>8} {'cost $':>10}")
    for name, t in report.tallies.items():
        print(f"{name.ljust(width)}  {t.already:>7} {t.written:>6} {t.failed:>7} {t.missing:>8} {t.cost:>10.4f}")
    for name, t in report.failing.items():
        state = "given up after failing repeatedly" if t.gave_up else f"{t.failed} failed calls"
        print(f"model {name!r} kept failing ({state}); last error: {t.last_error[:300]}")
    if report.stopped_by_limit:
        print(f"stopped before the spend could pass --limit-usd {args.limit_usd}; raise it and run again to go on")
    if not report.complete:
        print(f"{report.missing} answers missing: run the same command again to resume")


def _onboard(args: argparse.Namespace) -> int:
    import numpy as np

    from eccos_core.errors import ConfigError
    from eccos_core.logs import load_logs
    from eccos_core.pricing import load_models
    from eccos_core.probe import probe_outcomes
    from eccos_core.router import Router

    spec = next((m for m in load_models(args.models) if m.name == args.model), None)
    if spec is None:
        raise ConfigError(f"{args.models} has no model named {args.model!r}")
    log = args.probe or args.out.with_name(args.out.name + ".probe.jsonl")
    if args.n:
        options = {"concurrency": args.concurrency, "max_tokens": args.max_tokens, "limit_usd": args.limit_usd}
        probe = asyncio.run(probe_outcomes(spec, args.n, log, num_retries=args.retries, **options))
    else:
        probe = load_logs(log)
    router = Router.load(args.router) if args.router else Router.default()
    joined = router.onboard(spec, probe)
    fit = joined.probes[spec.name]
    scores = probe.scores([spec.name])
    length = f", {fit.output_tokens:.0f} output tokens per answer" if fit.output_tokens else ""
    print(
        f"{spec.name}: probe of {fit.probes} graded answers in {log} (mean score {float(np.nanmean(scores)):.3f}"
        f"{length}), predicted from {len(fit.inputs)} fitted models; pool {list(joined.planner.names)}"
    )
    print(f"router saved to {joined.save(args.out)}")
    return 0


def _build_default(args: argparse.Namespace) -> int:
    from eccos_core.bundled import write_bundled_embeddings
    from eccos_core.default_router import build_shipped
    from eccos_core.router import Router

    started = time.time()
    write_bundled_embeddings()  # first: the fit below then looks every bundled query up
    out = build_shipped(Router.fit_default, lambda router, path: router.save(path))
    print(f"wrote {out} ({time.time() - started:.1f} s)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from eccos_core.datasets import convert

    logs_path, models_path = convert(args.name, args.source, args.out)
    print(f"wrote {logs_path} and {models_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eccos`` command."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handler = {
        "demo": _demo,
        "eval": _eval,
        "train": _train,
        "convert": _convert,
        "collect": _collect,
        "onboard": _onboard,
        "build-default": _build_default,
    }[args.command]
    try:
        return handler(args)
    except EccosError as exc:
        print(f"eccos: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
