"""Convert the shared routing data sets into eccos routing logs and models files.

    python benchmarks/convert_data.py              # all three into benchmarks/data/ (git-ignored)
    python benchmarks/convert_data.py --bundle     # also regenerate the bundled eccos_core/data/llmrouter-9llm.*

Only llmrouter-9llm is MIT and may be bundled; routerbench-routerdc-subset and routerdc-7llm carry no license,
so they stay in benchmarks/data/, which .gitignore keeps out of commits. Each data set's notes (drops, dedupes,
where its prices come from) are written next to it as <name>.notes.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from eccos_core.bundled import BUNDLED_LOGS, BUNDLED_MODELS, BUNDLED_NAME
from eccos_core.datasets import CONVERTERS, load_dataset, shared_data_dir
from eccos_core.logs import write_logs
from eccos_core.pricing import write_models

OUT_DIR = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(CONVERTERS), help="data sets to convert (default: all)")
    parser.add_argument("--source", type=Path, default=None, help="folder holding the data sets (default: shared)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default: {OUT_DIR})")
    parser.add_argument("--bundle", action="store_true", help=f"also rewrite the bundled {BUNDLED_NAME} files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source = args.source or shared_data_dir()

    names = list(args.names)
    if args.bundle and BUNDLED_NAME not in names:
        names.append(BUNDLED_NAME)
    for name in names:
        dataset = load_dataset(name, source / name)
        logs_path = write_logs(dataset.logs, args.out / f"{name}.jsonl.gz")
        models_path = write_models(dataset.models, args.out / f"{name}.models.json")
        (args.out / f"{name}.notes.md").write_text(f"# {name}\n\n{dataset.notes}\n", encoding="utf-8")
        print(f"{name}: {len(dataset.logs)} records, {len(dataset.models)} models -> {logs_path}, {models_path}")
        if args.bundle and name == BUNDLED_NAME:
            write_logs(dataset.logs, BUNDLED_LOGS)
            write_models(dataset.models, BUNDLED_MODELS)
            sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in (BUNDLED_LOGS, BUNDLED_MODELS))
            print(f"bundled: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
