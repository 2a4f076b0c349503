#!/usr/bin/env bash
# The measurements of README's "Results" section. Run by hand from the repo root (about 15 minutes on 2 cores):
#   bash benchmarks/eval_all.sh
# Converts the three public data sets from ../shared/data into benchmarks/data/ (not committed: two of them carry
# no license), evaluates every policy on a fixed split (seed 0, 20 % held out) and writes
# benchmarks/results/eval-<name>.{json,txt,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/convert_data.py
for name in llmrouter-9llm routerbench-routerdc-subset routerdc-7llm; do
  eccos eval --data "benchmarks/data/$name.jsonl.gz" --models "benchmarks/data/$name.models.json" \
    --test-frac 0.2 --seed 0 \
    --json "benchmarks/results/eval-$name.json" --plot "benchmarks/results/eval-$name.png" \
    | tee "benchmarks/results/eval-$name.txt"
done
