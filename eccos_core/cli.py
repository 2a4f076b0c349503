"""Command line: ``eccos demo``, ``eccos eval`` and ``eccos convert``.

The CLI is the only place that prints; the library logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eccos_core.errors import EccosError

if TYPE_CHECKING:
    from eccos_core.evaluate import EvalReport


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
    ev.add_argument("--test-frac", type=float, default=0.2, help="held-out fraction (default 0.2)")
    ev.add_argument("--seed", type=int, default=0, help="split and batch-order seed (default 0)")
    ev.add_argument("--alpha", type=float, nargs="+", help="min_quality values (default: the feasible range)")
    ev.add_argument("--batch-size", type=int, help="queries routed jointly (default: the whole test split)")
    ev.add_argument("--k", type=int, default=16, help="neighbours of the retrieval predictor (default 16)")
    ev.add_argument("--no-guard", action="store_true", help="route on calibrated predictions without the guard")
    ev.add_argument("--json", type=Path, help="write the full results as JSON here")
    ev.add_argument("--plot", type=Path, help="write a cost-vs-success PNG here")

    conv = sub.add_parser("convert", help="convert a public routing data set into eccos routing logs")
    conv.add_argument("name", help="data set name (llmrouter-9llm, routerbench-routerdc-subset, routerdc-7llm)")
    conv.add_argument("source", type=Path, help="folder holding the data set's original files")
    conv.add_argument("out", type=Path, help="folder to write <name>.jsonl.gz and <name>.models.json into")
    return parser


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
    print("loading the default router (the first run fits and caches it, about a minute)...", flush=True)
    router = Router.default()
    train, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    report = evaluate(train, test, bundled_models(), router=router, progress=True, name="llmrouter-9llm (bundled)")
    _print_report(report, started)
    _finish(report, args)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from eccos_core.calibration import QualityGuard
    from eccos_core.evaluate import evaluate
    from eccos_core.logs import load_logs, split_logs
    from eccos_core.predictors.retrieval import RetrievalPredictor
    from eccos_core.pricing import ModelSpec, load_models, validate_pool
    from eccos_core.router import Router

    started = time.time()
    logs = load_logs(args.data)
    models = load_models(args.models) if args.models else validate_pool(ModelSpec(name) for name in logs.models)
    train, test = split_logs(logs, test_frac=args.test_frac, seed=args.seed)
    router = Router.fit(models, train, RetrievalPredictor(k=args.k, show_progress=True))
    if args.no_guard:
        router.guard = QualityGuard.identity()
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
    )
    _print_report(report, started)
    _finish(report, args)
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
    handler = {"demo": _demo, "eval": _eval, "convert": _convert}[args.command]
    try:
        return handler(args)
    except EccosError as exc:
        print(f"eccos: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
