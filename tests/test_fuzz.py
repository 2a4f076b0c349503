"""Property-based fuzz of the three readers of user files: routing logs, models files and saved routers.

Each property starts from a valid input, mutates it the ways files get damaged (fields with values of the wrong
type or range, keys dropped or repeated, bytes flipped, files truncated, arrays reshaped) and asserts the reader
either accepts the result or raises a typed :class:`~eccos_core.errors.EccosError`: never a ``KeyError``,
``ValueError``, ``EOFError`` or ``IndexError`` from deep inside. A saved router that loads must also plan.

Run with ``--hypothesis-show-statistics`` to see how many examples each property ran; with ``ECCOS_FUZZ_EXPLORE=1``
the examples are drawn afresh instead of the fixed sequence CI runs.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stubs import StubEncoder

from eccos_core.bundled import bundled_logs, bundled_models
from eccos_core.errors import EccosError
from eccos_core.logs import load_logs
from eccos_core.predictors.base import file_sha256
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.pricing import load_models
from eccos_core.router import Router

CANARY = "canary-fuzz-Secret-5150"
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=not os.environ.get("ECCOS_FUZZ_EXPLORE"),  # CI runs the same examples; set it to explore anew
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


# ------------------------------------------------------------------------------------------ mutations
SPECIAL = st.sampled_from([0, -1, 1e308, -1e308, 10**400, 2**63, 0.5, 1.5, "", "abc", "1", [], {}, None, True])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | SPECIAL,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths(value, prefix=()):
    """Every key path inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            out += paths(item, (*prefix, k))
    return out


@st.composite
def mutated_tree(draw, tree):
    """``tree`` (JSON-like) with a few values replaced, keys dropped or renamed."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(tree)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["set", "set", "drop", "rename"]))
        if op == "set":
            parent[path[-1]] = draw(JSON_VALUES)
        elif op == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = parent.pop(path[-1])
    return tree


@st.composite
def mutated_bytes(draw, data: bytes):
    """``data`` with a few bytes flipped, a slice dropped or junk inserted, or cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "drop":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            junk = draw(st.sampled_from([b"\xff\xfe", b"\x00", b'"', b":", b"[", b"{", b"*a", b"\t", b"\n", b"\xe9"]))
            data[at:at] = junk
        else:
            del data[at:]
    return bytes(data)


# -------------------------------------------------------------------------------------------- load_logs
LOG_RECORDS = [
    {"id": "a", "query": "What is 2 + 2?", "task": "math",
     "outcomes": {"m1": {"score": 1.0, "output_tokens": 12, "input_tokens": 9, "cost": 1e-5, "latency_s": 0.5},
                  "m2": {"score": 0.0}}},
    {"id": "b", "query": "Name a red planet.", "outcomes": {"m1": {"score": 0.5}}},
    {"id": "b", "query": "Name a red planet.", "outcomes": {"m2": {"score": 1, "output_tokens": 3}}},
    {"id": 7, "query": "caf\u00e9 \u2603", "task": "misc", "outcomes": {"m2": {"score": 0.25, "cost": 0}}},
]  # fmt: skip


@st.composite
def log_files(draw):
    records = draw(mutated_tree(LOG_RECORDS)) if draw(st.booleans()) else copy.deepcopy(LOG_RECORDS)
    if not isinstance(records, list):
        records = [records]
    text = "".join(json.dumps(r, ensure_ascii=draw(st.booleans())) + "\n" for r in records)
    if draw(st.booleans()):  # a model listed twice inside one line
        text = text.replace('{"m1": {', '{"m1": {"score": 1}, "m1": {', 1)
    data = text.encode("utf-8")
    gz = draw(st.booleans())
    if gz and draw(st.booleans()):
        data = gzip.compress(data)
        gz_done = True
    else:
        gz_done = False
    if draw(st.booleans()):
        data = draw(mutated_bytes(data))
    if gz and not gz_done:
        data = gzip.compress(data)
    return (".jsonl.gz" if gz else ".jsonl"), data


@FUZZ
@given(log_files())
def test_load_logs_raises_only_typed_errors(file):
    suffix, data = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"logs{suffix}"
        path.write_bytes(data)
        try:
            logs = load_logs(path)
        except EccosError as exc:
            event(f"typed error: {type(exc).__name__}")
            assert str(path) in str(exc)
        else:
            event("loaded")
            assert len(logs) >= 1 and all(0 <= o.score <= 1 for r in logs for o in r.outcomes.values())


# ------------------------------------------------------------------------------------------ models files
MODELS = {
    "models": [
        {"name": "alpha", "litellm_model": "openai/alpha", "input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7,
         "capacity": 10, "max_input_tokens": 8192, "timeout": 30,
         "litellm_params": {"api_key": CANARY, "api_base": f"http://u:{CANARY}@127.0.0.1:9/v1?key={CANARY}",
                            "extra_headers": {"Authorization": f"Bearer {CANARY}"}}},
        {"name": "beta", "input_cost_per_token": 0, "output_cost_per_token": 1e-6, "supports_tools": True,
         "max_output_tokens": 4096, "litellm_params": {"api_key": CANARY}},
        {"name": "gpt-4o-mini"},
    ]
}  # fmt: skip


@st.composite
def models_files(draw):
    tree = draw(mutated_tree(MODELS)) if draw(st.booleans()) else copy.deepcopy(MODELS)
    suffix = draw(st.sampled_from([".json", ".yaml", ".yml"]))
    text = json.dumps(tree) if suffix == ".json" else yaml.safe_dump(tree, sort_keys=False)
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = draw(mutated_bytes(data))
    return suffix, data


@FUZZ
@given(models_files())
def test_load_models_raises_only_typed_errors_and_never_quotes_a_credential(file):
    suffix, data = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"models{suffix}"
        path.write_bytes(data)
        try:
            pool = load_models(path)
        except EccosError as exc:
            event(f"typed error: {type(exc).__name__}")
            assert str(path) in str(exc)
            if CANARY.encode() in data and b"api_key" in data:  # the canary still sits in a credential field
                assert CANARY not in str(exc)
        else:
            event("loaded")
            assert all(CANARY not in repr(m) for m in pool)


# ------------------------------------------------------------------------------------------- Router.load
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    logs = bundled_logs()
    logs = logs.subset(range(0, len(logs), 150))
    router = Router.fit(bundled_models(), logs, RetrievalPredictor(k=4, encoder=StubEncoder()))
    return router.save(tmp_path_factory.mktemp("fuzz") / "router")


def resign(predictor_dir: Path) -> None:
    try:
        manifest = json.loads((predictor_dir / "predictor.json").read_text())
        sums = manifest["checksums"]
        manifest["checksums"] = {name: file_sha256(predictor_dir / name) for name in sums}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # the manifest itself is what is broken
    (predictor_dir / "predictor.json").write_text(json.dumps(manifest))


@st.composite
def damage(draw, names: list[str]):
    """A plan of damage to a saved router: which file, and what happens to it."""
    name = draw(st.sampled_from(names))
    kinds = ["bytes", "empty", "delete"]
    kinds += ["tree", "tree", "tree"] if name.endswith(".json") else ["array", "array", "array"]
    kind = draw(st.sampled_from(kinds))
    return name, kind, draw(st.data()), draw(st.booleans())


ARRAY_OPS = ["nan", "inf", "negative", "two", "drop_row", "drop_column", "transpose", "float16", "int", "strings"]


def damage_array(array: np.ndarray, op: str, data) -> np.ndarray:
    array = np.array(array)
    if op in ("nan", "inf", "negative", "two") and array.size and array.dtype.kind == "f":
        flat = array.reshape(-1)
        flat[data.draw(st.integers(0, flat.size - 1))] = {"nan": np.nan, "inf": np.inf, "negative": -3.0, "two": 2.0}[
            op
        ]
        return flat.reshape(array.shape)
    if op == "drop_row" and len(array):
        return array[1:]
    if op == "drop_column" and array.ndim == 2:
        return array[:, 1:]
    if op == "transpose" and array.ndim == 2:
        return array.T
    if op == "float16" and array.dtype.kind == "f":
        return array.astype(np.float16)
    if op == "int":
        return np.zeros(array.shape, dtype=np.int64)
    return np.array(["x"] * max(1, len(array)))


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_router_load_raises_only_typed_errors_and_what_loads_plans(saved, data):
    names = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    name, kind, draw, resigned = data.draw(damage(names))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(shutil.copytree(saved, Path(folder) / "router"))
        file = path / name
        if kind == "bytes":
            file.write_bytes(draw.draw(mutated_bytes(file.read_bytes())))
        elif kind == "empty":
            file.write_bytes(b"")
        elif kind == "delete":
            file.unlink()
        elif kind == "tree":
            tree = json.loads(file.read_text())
            file.write_text(json.dumps(draw.draw(mutated_tree(tree)) if tree is not None else draw.draw(JSON_VALUES)))
        else:
            array = np.load(file, allow_pickle=False)
            np.save(file, damage_array(array, draw.draw(st.sampled_from(ARRAY_OPS)), draw))
        if resigned:  # what a buggy writer leaves: the damage is in the state, the checksums match it
            resign(path / "predictor")
        try:
            router = Router.load(path)
        except EccosError as exc:
            event(f"typed error at load: {type(exc).__name__}{' (checksums re-recorded)' if resigned else ''}")
            assert str(path) in str(exc)
            return
        router.predictor.encoder = StubEncoder()
        try:
            plan = router.plan(["What is 2 + 2?", "Name a red planet."], 0.5)
        except EccosError as exc:
            event(f"loaded; typed error at plan: {type(exc).__name__}")
            return
        event("loaded and planned")
        assert all(0.0 <= q.p_success <= 1.0 and np.isfinite(q.cost) for q in plan.queries)
