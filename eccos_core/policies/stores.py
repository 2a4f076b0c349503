"""Where per-call price streams keep their state: this process, or a Redis every replica shares.

A stream's state is what its price is computed from (:class:`~eccos_core.dual.StreamPrice`): for every price on
a fixed grid, the exponentially decayed sum over recent calls of the value (quality, or cost for a budget) each
call would get at that price; the decayed call count; and the decayed calls per model (for share caps). One
vector per stream, updated in one atomic step per call, so every process sharing a store keeps one mean.

Each store has a sync face (``read``, ``commit``, ``totals``, ``reset``: ``Router.complete``, the shells) and an
async one (``aread``, ``acommit``, ``atotals``, ``areset``: the LiteLLM Proxy plugin, ``Router.acomplete``):

- :class:`MemoryStore`: this process only; saved with the router (``streams.json``).
- :class:`RedisStore`: shared; each commit is one Lua script, so concurrent replicas never lose an update. It
  wraps a ``redis.Redis`` (sync face) or a ``redis.asyncio.Redis`` (async face).
- :class:`FailoverStore`: a Redis store that turns local while Redis fails, with one warning per outage; a call
  is never failed for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from eccos_core.errors import InputError

logger = logging.getLogger("eccos.fleet")

MAX_STREAMS = 64
"""Streams a :class:`MemoryStore` keeps; past it the least recently used one is dropped (a caller computing a
fresh ``min_quality`` per call would otherwise grow the state without bound)."""
MAX_FLEET_STREAMS = 256
"""Streams (``min_quality`` / budget values) one Redis prefix keeps; the least recently used past it are deleted,
so clients sending a fresh value per call cannot fill the shared Redis: at most ``3 * MAX_FLEET_STREAMS + 1``
keys per prefix."""
STREAM_TTL_S = 7 * 24 * 3600
"""A stream unused this long expires from Redis (its keys are refreshed at every call)."""
RETRY_AFTER = 5.0
"""Seconds a failover store stays local after its Redis failed, before it tries Redis again."""
FORMAT = "eccos-streams/1"


@dataclass(frozen=True)
class Snapshot:
    """The state of a stream as read before a call."""

    sums: np.ndarray
    """Decayed sum over recent calls of the value (quality, or cost for a budget) each got at each grid price."""
    calls: float
    """Decayed number of recent calls."""
    counts: np.ndarray
    """Decayed calls per model (pool order)."""


@dataclass(frozen=True)
class Commit:
    """What a commit adds: the call's vector, its models in price order, and their quality and cost."""

    vector: np.ndarray
    order: tuple[int, ...]
    quality: np.ndarray
    cost: np.ndarray


class PriceStore(Protocol):
    """Where streams live: ``read``, the atomic ``commit``, ``totals`` and ``reset``, each sync and async."""

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other processes right now."""
        ...

    def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        ...

    def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Decay the state, add the call's vector and count its pick atomically; return the pick.

        The pick is the first model in ``change.order`` whose cap still holds (else the one with most room).
        """
        ...

    def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        ...

    def reset(self, stream: str) -> None:
        """Forget the stream."""
        ...

    async def aread(self, stream: str, grid: int, models: int) -> Snapshot:
        """:meth:`read`, async."""
        ...

    async def acommit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """:meth:`commit`, async."""
        ...

    async def atotals(self, stream: str) -> dict[str, float]:
        """:meth:`totals`, async."""
        ...

    async def areset(self, stream: str) -> None:
        """:meth:`reset`, async."""
        ...


def fits_cap(counts: np.ndarray, calls: float, caps: np.ndarray) -> np.ndarray:
    """Per model: whether one more call keeps it within its cap (``caps < 0``: no cap).

    A model with cap ``s`` serves at most ``s·calls + 1`` of the decayed window (the ``+ 1`` lets the first calls
    through).
    """
    return (caps < 0) | (counts + 1.0 <= caps * (calls + 1.0) + 1.0)


def pick(counts: np.ndarray, calls: float, order: Sequence[int], caps: np.ndarray) -> int:
    """First column in ``order`` whose cap holds after one more call (else the one with the most room)."""
    fits = fits_cap(counts, calls, caps)
    return next((int(j) for j in order if fits[j]), int(min(order, key=lambda j: counts[j] - caps[j] * calls)))


def _zero_totals() -> dict[str, float]:
    return {"calls": 0.0, "quality": 0.0, "cost": 0.0}


@dataclass
class _MemoryStream:
    sums: np.ndarray
    calls: float
    counts: np.ndarray
    totals: dict[str, float] = field(default_factory=_zero_totals)


class MemoryStore:
    """Streams of this process only (thread-safe); saved with the router."""

    shared = False

    def __init__(self, *, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = int(max_streams)
        self._lock = threading.Lock()
        self._streams: dict[str, _MemoryStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def __bool__(self) -> bool:  # an empty store is still a store
        return True

    def _stream(self, stream: str, grid: int, models: int) -> _MemoryStream:
        state = self._streams.pop(stream, None)  # re-inserted: least recently used first
        if state is None or len(state.sums) != grid or len(state.counts) != models:
            state = _MemoryStream(np.zeros(grid), 0.0, np.zeros(models))
        self._streams[stream] = state
        while len(self._streams) > self.max_streams:
            dropped = next(iter(self._streams))
            logger.info("per-call prices: more than %d streams; dropping the least used, %s", self.max_streams, dropped)
            del self._streams[dropped]
        return state

    def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        with self._lock:
            state = self._stream(stream, grid, models)
            return Snapshot(state.sums.copy(), state.calls, state.counts.copy())

    def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Decay, add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        with self._lock:
            state = self._stream(stream, len(change.vector), len(change.quality))
            state.sums = state.sums * decay + change.vector
            state.counts = state.counts * decay
            calls = state.calls * decay
            j = pick(state.counts, calls, change.order, caps)
            state.counts[j] += 1.0
            state.calls = calls + 1.0
            state.totals["calls"] += 1
            state.totals["quality"] += float(change.quality[j])
            state.totals["cost"] += float(change.cost[j])
            return j

    def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        with self._lock:
            state = self._streams.get(stream)
            return dict(state.totals) if state is not None else _zero_totals()

    def reset(self, stream: str | None = None) -> None:
        """Forget one stream (``None``: every stream)."""
        with self._lock:
            if stream is None:
                self._streams.clear()
            else:
                self._streams.pop(stream, None)

    def set_totals(self, stream: str, calls: float, quality: float, cost: float) -> None:
        """Set a stream's totals (a stream restored from an older save)."""
        with self._lock:
            state = self._streams.get(stream)
            if state is not None:
                state.totals = {"calls": float(calls), "quality": float(quality), "cost": float(cost)}

    def stream_keys(self) -> list[str]:
        """The streams held, least recently used first."""
        with self._lock:
            return list(self._streams)

    async def aread(self, stream: str, grid: int, models: int) -> Snapshot:
        """:meth:`read` (no I/O: it never blocks the loop for long)."""
        return self.read(stream, grid, models)

    async def acommit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """:meth:`commit`."""
        return self.commit(stream, decay, change, caps)

    async def atotals(self, stream: str) -> dict[str, float]:
        """:meth:`totals`."""
        return self.totals(stream)

    async def areset(self, stream: str) -> None:
        """:meth:`reset`."""
        self.reset(stream)

    # ------------------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON form: every stream's state, least recently used first."""
        with self._lock:
            streams = {
                key: {
                    "sums": [float(v) for v in state.sums],
                    "calls": float(state.calls),
                    "counts": [float(v) for v in state.counts],
                    "totals": dict(state.totals),
                }
                for key, state in self._streams.items()
            }
        return {"format": FORMAT, "streams": streams}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryStore:
        """Inverse of :meth:`to_dict` (``ValueError`` on a state no stream can have)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"format {found!r}, expected {FORMAT!r}")
        store = cls()
        for key, entry in dict(data.get("streams") or {}).items():
            sums = np.asarray(entry["sums"], dtype=float)
            counts = np.asarray(entry["counts"], dtype=float)
            calls = float(entry["calls"])
            totals = {name: float(entry["totals"][name]) for name in ("calls", "quality", "cost")}
            values = np.concatenate([sums, counts, [calls], list(totals.values())])
            if sums.ndim != 1 or counts.ndim != 1 or not np.isfinite(values).all() or calls < 0 or (counts < 0).any():
                raise ValueError(f"stream {key!r}: sums, counts and calls must be finite and calls ≥ 0")
            store._streams[str(key)] = _MemoryStream(sums, calls, counts, totals)
        return store


_COMMIT = """
local decay = tonumber(ARGV[1])
local vector = cjson.decode(ARGV[2])
local order = cjson.decode(ARGV[3])
local caps = cjson.decode(ARGV[4])
local quality = cjson.decode(ARGV[5])
local cost = cjson.decode(ARGV[6])
local m = #quality
local raw = redis.call('GET', KEYS[1])
local sums = {}
if raw then sums = cjson.decode(raw) end
if #sums ~= #vector then sums = {} end
for i = 1, #vector do sums[i] = (sums[i] or 0) * decay + vector[i] end
raw = redis.call('GET', KEYS[2])
local counts = {}
if raw then counts = cjson.decode(raw) end
if #counts ~= m + 1 then counts = {} end
for i = 1, m + 1 do counts[i] = (counts[i] or 0) * decay end
local calls = counts[m + 1]
local pick = -1
for _, j in ipairs(order) do
  if caps[j + 1] < 0 or counts[j + 1] + 1 <= caps[j + 1] * (calls + 1) + 1 then pick = j break end
end
if pick < 0 then
  local room = nil
  for _, j in ipairs(order) do
    local r = counts[j + 1] - caps[j + 1] * calls
    if room == nil or r < room then room = r pick = j end
  end
end
counts[pick + 1] = counts[pick + 1] + 1
counts[m + 1] = calls + 1
local ttl = tonumber(ARGV[7])
redis.call('SET', KEYS[1], cjson.encode(sums), 'EX', ttl)
redis.call('SET', KEYS[2], cjson.encode(counts), 'EX', ttl)
redis.call('HINCRBY', KEYS[3], 'calls', 1)
redis.call('HINCRBYFLOAT', KEYS[3], 'quality', quality[pick + 1])
redis.call('HINCRBYFLOAT', KEYS[3], 'cost', cost[pick + 1])
redis.call('EXPIRE', KEYS[3], ttl)
-- the registry of live streams, least recently used first: past ARGV[8] streams the oldest are deleted
local now = redis.call('TIME')
redis.call('ZADD', KEYS[4], tonumber(now[1]) + tonumber(now[2]) / 1e6, ARGV[9])
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[8])
if extra > 0 then
  for _, base in ipairs(redis.call('ZPOPMIN', KEYS[4], extra)) do
    if base ~= ARGV[9] and string.sub(base, 1, #ARGV[10]) == ARGV[10] then
      redis.call('DEL', base .. ':sums', base .. ':counts', base .. ':totals')
    end
  end
end
redis.call('EXPIRE', KEYS[4], ttl)
return pick
"""


def _is_async(client: Any) -> bool:
    try:
        from redis.asyncio import Redis as AsyncRedis
    except ImportError:  # pragma: no cover - redis comes with the proxy extra
        return False
    return isinstance(client, AsyncRedis)


class RedisStore:
    """Streams shared through Redis: reads are one ``MGET``, commits one Lua script (atomic across replicas).

    Give it a ``redis.Redis`` for the sync face or a ``redis.asyncio.Redis`` for the async one; the other face
    raises :class:`~eccos_core.errors.InputError`.
    """

    shared = True

    def __init__(
        self,
        client: Any,
        prefix: str = "eccos",
        *,
        max_streams: int = MAX_FLEET_STREAMS,
        ttl_s: int = STREAM_TTL_S,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_streams = int(max_streams)
        """Streams kept under this prefix (least recently used deleted past it)."""
        self.ttl_s = int(ttl_s)
        """Seconds an unused stream's keys live."""
        self.is_async = _is_async(client)
        self._commit = client.register_script(_COMMIT)

    def _keys(self, stream: str) -> list[str]:
        base = f"{self.prefix}:{stream}"
        return [f"{base}:sums", f"{base}:counts", f"{base}:totals", f"{self.prefix}:streams"]

    def _face(self, want_async: bool) -> None:
        if want_async != self.is_async:
            kind = "redis.asyncio.Redis" if self.is_async else "redis.Redis"
            other = "redis.Redis (sync)" if self.is_async else "redis.asyncio.Redis (async)"
            raise InputError(f"this RedisStore wraps a {kind}; routing from this side needs a {other} client")

    def _snapshot(self, raw_sums: Any, raw_counts: Any, grid: int, models: int) -> Snapshot:
        sums = np.asarray(json.loads(raw_sums), dtype=float) if raw_sums else np.zeros(grid)
        counts = np.asarray(json.loads(raw_counts), dtype=float) if raw_counts else np.zeros(models + 1)
        if len(sums) != grid:
            sums = np.zeros(grid)
        if len(counts) != models + 1:
            counts = np.zeros(models + 1)
        return Snapshot(sums, float(counts[-1]), counts[:-1])

    def _args(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> list[str]:
        return [
            repr(float(decay)),
            json.dumps([float(v) for v in change.vector]),
            json.dumps([int(j) for j in change.order]),
            json.dumps([float(c) for c in caps]),
            json.dumps([float(v) for v in change.quality]),
            json.dumps([float(v) for v in change.cost]),
            str(self.ttl_s),
            str(self.max_streams),
            f"{self.prefix}:{stream}",
            f"{self.prefix}:",
        ]

    @staticmethod
    def _totals(raw: Mapping[Any, Any]) -> dict[str, float]:
        totals = _zero_totals()
        totals.update({(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()})
        return totals

    def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        self._face(False)
        return self._snapshot(*self.client.mget(self._keys(stream)[:2]), grid, models)

    def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Decay, add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        self._face(False)
        return int(self._commit(keys=self._keys(stream), args=self._args(stream, decay, change, caps)))

    def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        self._face(False)
        return self._totals(self.client.hgetall(self._keys(stream)[2]))

    def reset(self, stream: str) -> None:
        """Forget the stream (for every replica)."""
        self._face(False)
        self.client.delete(*self._keys(stream)[:3])

    async def aread(self, stream: str, grid: int, models: int) -> Snapshot:
        """:meth:`read`, async."""
        self._face(True)
        return self._snapshot(*(await self.client.mget(self._keys(stream)[:2])), grid, models)

    async def acommit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """:meth:`commit`, async."""
        self._face(True)
        return int(await self._commit(keys=self._keys(stream), args=self._args(stream, decay, change, caps)))

    async def atotals(self, stream: str) -> dict[str, float]:
        """:meth:`totals`, async."""
        self._face(True)
        return self._totals(await self.client.hgetall(self._keys(stream)[2]))

    async def areset(self, stream: str) -> None:
        """:meth:`reset`, async."""
        self._face(True)
        await self.client.delete(*self._keys(stream)[:3])


def _redis_failure(error: BaseException) -> bool:
    """Whether ``error`` means Redis is unreachable or failing (not a bug of ours)."""
    if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    return type(error).__module__.split(".")[0] == "redis"  # redis-py's ConnectionError, TimeoutError, ...


class FailoverStore:
    """A shared store that turns local while it fails: calls keep flowing, with one warning per outage."""

    def __init__(self, primary: RedisStore, *, retry_after: float = RETRY_AFTER) -> None:
        self.primary = primary
        self.local = MemoryStore()
        self.retry_after = retry_after
        self._down_until = 0.0

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other processes right now."""
        return time.monotonic() >= self._down_until

    def _call(self, name: str, *args: Any) -> Any:
        if self.shared:
            try:
                return getattr(self.primary, name)(*args)
            except Exception as error:
                if not _redis_failure(error):
                    raise
                self._fail(error)
        return getattr(self.local, name)(*args)

    async def _acall(self, name: str, *args: Any) -> Any:
        if self.shared:
            try:
                return await getattr(self.primary, name)(*args)
            except Exception as error:
                if not _redis_failure(error):
                    raise
                self._fail(error)
        return await getattr(self.local, name)(*args)

    def _fail(self, error: BaseException) -> None:
        if self.shared:
            logger.warning(
                "eccos per-call prices: Redis failed (%s); pricing with this process's state for %.0f s",
                type(error).__name__,
                self.retry_after,
            )
        self._down_until = time.monotonic() + self.retry_after

    def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        return self._call("read", stream, grid, models)

    def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Decay, add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        return self._call("commit", stream, decay, change, caps)

    def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        return self._call("totals", stream)

    def reset(self, stream: str) -> None:
        """Forget the stream."""
        self.local.reset(stream)
        self._call("reset", stream)

    async def aread(self, stream: str, grid: int, models: int) -> Snapshot:
        """:meth:`read`, async."""
        return await self._acall("aread", stream, grid, models)

    async def acommit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """:meth:`commit`, async."""
        return await self._acall("acommit", stream, decay, change, caps)

    async def atotals(self, stream: str) -> dict[str, float]:
        """:meth:`totals`, async."""
        return await self._acall("atotals", stream)

    async def areset(self, stream: str) -> None:
        """:meth:`reset`, async."""
        self.local.reset(stream)
        await self._acall("areset", stream)


__all__ = [
    "MAX_FLEET_STREAMS",
    "MAX_STREAMS",
    "STREAM_TTL_S",
    "Commit",
    "FailoverStore",
    "MemoryStore",
    "PriceStore",
    "RedisStore",
    "Snapshot",
    "fits_cap",
    "pick",
]
