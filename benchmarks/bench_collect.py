"""``eccos collect`` killed twice and resumed: does the routing log end up exactly as an uninterrupted run's?

300 multiple-choice questions (real MMLU / ARC / CommonsenseQA / OpenBookQA questions from the LLMRouter data
when ``../shared/data`` is there, else generated ones) go to 3 models served by an OpenAI-compatible server on
127.0.0.1 started here: ``right-model`` answers with the true letter, ``wrong-model`` with another, and
``flaky-model`` answers right but fails 20 % of requests with HTTP 503 (LiteLLM retries twice). Each reply
takes 20-60 ms.

The interrupted collection runs ``eccos collect`` in a subprocess, SIGKILLs it once the log holds 300 lines
and again at 600, then runs it to the end (and again while a pair is still missing after the flaky model's
retries). The reference is the same command run once, uninterrupted.

    python benchmarks/bench_collect.py

Writes ``benchmarks/results/collect.{json,txt}``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUESTIONS = 300
MODELS = ("right-model", "wrong-model", "flaky-model")
KILL_AT = (300, 600)
LETTERS = "ABCD"


def load_questions() -> tuple[list[dict[str, Any]], str]:
    """300 multiple-choice questions with their letters: real ones when the shared data is present."""
    from eccos_core.datasets import shared_data_dir

    folder = shared_data_dir() / "llmrouter-9llm" / "query_data"
    rows: dict[str, dict[str, Any]] = {}
    tasks = {"mmlu", "arc_challenge", "commonsense_qa", "openbook_qa", "gpqa"}
    for split in ("test", "train"):
        path = folder / f"default_query_{split}.jsonl"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8") as handle:
            for i, row in enumerate(map(json.loads, handle)):
                if row["task_name"] in tasks and len(row["ground_truth"]) == 1 and row["ground_truth"] in LETTERS:
                    text = f"{row['query']}\nChoices: {row['choices']}\nAnswer with the letter."
                    rows[text] = {"id": f"{split}-{i}", "query": text, "answer": row["ground_truth"]}
                    rows[text]["task"] = row["task_name"]
    if len(rows) >= QUESTIONS:
        return random.Random(0).sample(list(rows.values()), QUESTIONS), "LLMRouter multiple-choice questions"
    generated = [
        {"id": f"q{i}", "query": f"Question {i}: pick the right option.", "answer": LETTERS[i % 4], "task": "gen"}
        for i in range(QUESTIONS)
    ]
    return generated, "generated"


class Server:
    """OpenAI-compatible quiz server: right / wrong / flaky models, 20-60 ms per reply."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.requests = 0
        self.failures = 0
        self.lock = threading.Lock()
        self.rng = random.Random(0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                model, prompt = body["model"], body["messages"][-1]["content"]
                with server.lock:
                    server.requests += 1
                    delay, fail = (
                        server.rng.uniform(0.02, 0.06),
                        model.startswith("flaky") and server.rng.random() < 0.2,
                    )
                    server.failures += fail
                time.sleep(delay)
                if fail:
                    self.send(503, {"error": {"message": "overloaded", "type": "server_error"}})
                    return
                right = server.answers[prompt]
                letter = LETTERS[(LETTERS.index(right) + 1) % 4] if model.startswith("wrong") else right
                reply = f"The answer is ({letter})."
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 4, "total_tokens": 0}
                choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                self.send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": model,
                                "choices": [choice], "usage": usage})  # fmt: skip

            def send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a killed client resets its connections
        self.api_base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def pairs(path: Path) -> list[tuple[str, str, float]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        out += [(data["id"], model, o["score"]) for model, o in data["outcomes"].items()]
    return out


def run_collect(command: list[str], out: Path, kill_at: int | None) -> dict[str, Any]:
    """One ``eccos collect`` process, SIGKILLed once ``out`` holds ``kill_at`` lines (None: run to the end)."""
    before = lines(out)
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    killed = False
    if kill_at is not None:
        while child.poll() is None and lines(out) < kill_at:
            time.sleep(0.005)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed = True
    stdout, _ = child.communicate()
    torn = re.search(r"unfinished last line \((\d+) bytes\)", stdout or "")
    data = out.read_bytes() if out.exists() else b""
    return {
        "killed": killed,
        "exit_code": child.returncode,
        "lines_before": before,
        "lines_after": lines(out),
        "ends_with_newline": data.endswith(b"\n") or not data,
        "torn_bytes_cut_at_start": int(torn.group(1)) if torn else 0,
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    questions, source = load_questions()
    server = Server({q["query"]: q["answer"] for q in questions})
    work = Path(tempfile.mkdtemp(prefix="eccos-bench-collect-"))
    qfile = work / "questions.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    models = [
        {"name": name, "litellm_model": f"openai/{name}", "input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7,
         "litellm_params": {"api_base": server.api_base, "api_key": "sk-bench"}}
        for name in MODELS
    ]  # fmt: skip
    mfile = work / "models.json"
    mfile.write_text(json.dumps({"models": models}), encoding="utf-8")

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "eccos_core.cli", "collect", "--questions", str(qfile), "--models", str(mfile),
                "--out", str(out), "--grader", "mcq", "--concurrency", "8"]  # fmt: skip

    expected = len(questions) * len(MODELS)
    reference = work / "reference.jsonl"
    print("uninterrupted reference run...", flush=True)
    reference_runs = [run_collect(command(reference), reference, None)]
    while len({(i, m) for i, m, _ in pairs(reference)}) < expected and len(reference_runs) < 5:
        reference_runs.append(run_collect(command(reference), reference, None))

    out = work / "interrupted.jsonl"
    runs, snapshots = [], []
    for kill_at in KILL_AT:
        print(f"interrupted run: SIGKILL at {kill_at} lines...", flush=True)
        runs.append(run_collect(command(out), out, kill_at))
        snapshots.append(set(pairs(out)))
    print("resuming to the end...", flush=True)
    runs.append(run_collect(command(out), out, None))
    while len({(i, m) for i, m, _ in pairs(out)}) < expected and len(runs) < len(KILL_AT) + 5:
        runs.append(run_collect(command(out), out, None))  # the flaky model's pairs that failed after retries

    final, ref = pairs(out), pairs(reference)
    final_pairs = [(i, m) for i, m, _ in final]
    result = {
        "questions": len(questions),
        "question_source": source,
        "models": list(MODELS),
        "pairs_expected": expected,
        "lines_out": lines(out),
        "pairs_out": len(set(final_pairs)),
        "duplicates": len(final_pairs) - len(set(final_pairs)),
        "lost_after_kill": sum(len(s - set(final)) for s in snapshots),
        "missing_vs_reference": len({(i, m) for i, m, _ in ref} - set(final_pairs)),
        "score_mismatches_vs_reference": len(set(ref) ^ set(final)),
        "interrupted_runs": runs,
        "interrupted_wall_s": sum(r["wall_s"] for r in runs),
        "reference_runs": reference_runs,
        "reference_wall_s": sum(r["wall_s"] for r in reference_runs),
        "server_requests": server.requests,
        "server_503s": server.failures,
        "machine": "2 CPU cores (shared), no GPU; server on 127.0.0.1, 20-60 ms per reply",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "collect.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = [
        f"eccos collect: {len(questions)} questions ({source}) x {len(MODELS)} models = {expected} answers; "
        "concurrency 8; killed with SIGKILL at 300 and 600 lines, then resumed",
        "",
        f"{'run':>4} {'killed':>6} {'lines before':>12} {'lines after':>11} {'torn bytes cut':>14} {'wall s':>7}",
    ]
    for k, r in enumerate(runs, start=1):
        text.append(
            f"{k:>4} {'yes' if r['killed'] else 'no':>6} {r['lines_before']:>12} {r['lines_after']:>11} "
            f"{r['torn_bytes_cut_at_start']:>14} {r['wall_s']:>7.1f}"
        )
    text += [
        "",
        f"lines in (answers expected) {expected}; lines out {result['lines_out']}; distinct (id, model) "
        f"{result['pairs_out']}; duplicates {result['duplicates']}; lost after a kill {result['lost_after_kill']}; "
        f"missing vs the uninterrupted run {result['missing_vs_reference']}; score mismatches "
        f"{result['score_mismatches_vs_reference']}",
        f"wall time: interrupted path {result['interrupted_wall_s']:.1f} s over {len(runs)} runs; uninterrupted "
        f"{result['reference_wall_s']:.1f} s over {len(reference_runs)} run(s); flaky-model 503s: "
        f"{result['server_503s']} of {result['server_requests']} requests",
    ]
    (RESULTS / "collect.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
