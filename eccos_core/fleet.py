"""One per-call price for a fleet: many processes routing one stream of calls, sharing their state.

:class:`~eccos_core.dual.OnlinePrice` prices a stream of calls inside one process: it keeps the recent calls'
hulls and finds the price at which their mean predicted quality meets the target. A fleet of proxy replicas
cannot cheaply share a window of hulls, but it can share what the price is computed from: for every price on a
fixed grid, the (exponentially decayed) sum over recent calls of the quality each call would get at that
price. That is one vector per stream, updated in one atomic step per call, and every replica prices from the
same vector, so the fleet keeps one mean, not one per replica.

Per call (:meth:`FleetPrice.route`):

1. read the shared state (the vector, the decayed call count, the per-model decayed counts);
2. drop the models at their cap, build the call's hull, add its vector to the shared one (locally) and take
   the smallest grid price at which the window, mixed with the training queries (as ``OnlinePrice`` mixes
   them), meets the target;
3. commit atomically: add the call's vector, take the first model in price order whose cap still holds
   (another replica may have filled it since step 1), count it.

Caps are shares of the fleet's recent calls: a model with cap ``s`` serves at most ``s·calls + 1`` of the
decayed window (the ``+ 1`` lets the first calls through). Budget streams work the same way on predicted cost.

Stores: :class:`MemoryStore` (one process; the state is lost with it) and :class:`RedisStore` (shared; each
commit is one Lua script, so concurrent replicas never lose an update). A Redis that stops answering turns the
price local for a while, with one warning; it never fails a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from eccos_core.dual import MAX_STREAMS, PRIOR_CALLS, WINDOW, DualCurve, price_for_target
from eccos_core.errors import InputError
from eccos_core.optimize.budget import lower_hulls

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("eccos.fleet")

GRID_EXTRA = np.geomspace(1e-9, 1e2, 96)
"""Prices added to the fitted curve's own grid, so deployments priced unlike the training pool still find a
price (USD per unit of predicted quality)."""
RETRY_AFTER = 5.0
"""Seconds a fleet price stays local after its Redis failed, before it tries Redis again."""


@dataclass(frozen=True)
class Snapshot:
    """The shared state of a stream as read before a call."""

    sums: np.ndarray
    """Decayed sum over recent calls of the value (quality, or cost for a budget) each got at each grid price."""
    calls: float
    """Decayed number of recent calls."""
    counts: np.ndarray
    """Decayed calls per model (pool order)."""


@dataclass(frozen=True)
class Commit:
    """What a commit needs: the call's vector, its models in price order, and their quality and cost."""

    vector: np.ndarray
    order: tuple[int, ...]
    quality: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class FleetDecision:
    """Where one call went and why."""

    model: int
    """Column of the chosen model (pool order)."""
    price: float
    """The price λ the call was routed at (``inf``: the target was out of reach; best models)."""
    order: tuple[int, ...]
    """Allowed, uncapped columns by ``cost − price·quality``, the price's pick first."""
    target: float
    """The stream's internal target (mean predicted quality, or for a budget, cost per call)."""
    met: bool
    """Whether the window, mixed with the training queries, can meet the target at all."""
    calls: float
    """Decayed recent calls of the fleet this price was computed from."""
    capped: tuple[int, ...]
    """Columns left out because the fleet had filled their cap."""
    shared: bool
    """Whether the state came from the shared store (False: this process alone)."""


class PriceStore(Protocol):
    """Where a stream's state lives; ``read`` and the atomic ``commit``."""

    shared: bool

    async def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        ...

    async def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Add the call's vector and count its pick atomically; return the pick.

        The pick is the first model in ``change.order`` whose cap still holds.
        """
        ...

    async def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        ...


@dataclass
class _MemoryStream:
    sums: np.ndarray
    calls: float
    counts: np.ndarray
    totals: dict[str, float] = field(default_factory=lambda: {"calls": 0.0, "quality": 0.0, "cost": 0.0})


def fits_cap(counts: np.ndarray, calls: float, caps: np.ndarray) -> np.ndarray:
    """Per model, whether its cap still holds after one more call to it.

    That is ``count + 1 ≤ cap·(calls + 1) + 1`` (a negative cap: none); the commit script checks the same inside
    Redis.
    """
    return (caps < 0) | (counts + 1 <= caps * (calls + 1) + 1)


def _pick(counts: np.ndarray, calls: float, order: Sequence[int], caps: np.ndarray) -> int:
    """First column in ``order`` whose cap holds after one more call (else the one with the most room)."""
    fits = fits_cap(counts, calls, caps)
    return next((int(j) for j in order if fits[j]), int(min(order, key=lambda j: counts[j] - caps[j] * calls)))


class MemoryStore:
    """State of this process only (a fleet without Redis: each replica keeps its own price)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, _MemoryStream] = {}

    def _stream(self, stream: str, grid: int, models: int) -> _MemoryStream:
        state = self._streams.pop(stream, None)  # re-inserted: least recently used first
        if state is None or len(state.sums) != grid or len(state.counts) != models:
            state = _MemoryStream(np.zeros(grid), 0.0, np.zeros(models))
        self._streams[stream] = state
        while len(self._streams) > MAX_STREAMS:
            del self._streams[next(iter(self._streams))]
        return state

    async def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        with self._lock:
            state = self._stream(stream, grid, models)
            return Snapshot(state.sums.copy(), state.calls, state.counts.copy())

    async def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        with self._lock:
            state = self._stream(stream, len(change.vector), len(change.quality))
            state.sums = state.sums * decay + change.vector
            state.counts = state.counts * decay
            calls = state.calls * decay
            j = _pick(state.counts, calls, change.order, caps)
            state.counts[j] += 1.0
            state.calls = calls + 1.0
            state.totals["calls"] += 1
            state.totals["quality"] += float(change.quality[j])
            state.totals["cost"] += float(change.cost[j])
            return j

    async def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        with self._lock:
            state = self._streams.get(stream)
            return dict(state.totals) if state is not None else {"calls": 0.0, "quality": 0.0, "cost": 0.0}


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

MAX_FLEET_STREAMS = 256
"""Streams (``min_quality`` / budget values) one Redis prefix keeps; the least recently used past it are deleted,
so clients sending a fresh value per call cannot fill the shared Redis: at most ``3 * MAX_FLEET_STREAMS + 1``
keys per prefix."""

STREAM_TTL_S = 7 * 24 * 3600
"""A stream unused this long expires from Redis (its keys are refreshed at every call)."""


class RedisStore:
    """State shared through Redis: reads are one ``MGET``, commits one Lua script (atomic across replicas)."""

    shared = True

    def __init__(
        self,
        client: Redis,
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
        self._commit = client.register_script(_COMMIT)

    def _keys(self, stream: str) -> list[str]:
        base = f"{self.prefix}:{stream}"
        return [f"{base}:sums", f"{base}:counts", f"{base}:totals", f"{self.prefix}:streams"]

    async def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        raw_sums, raw_counts = await self.client.mget(self._keys(stream)[:2])
        sums = np.asarray(json.loads(raw_sums), dtype=float) if raw_sums else np.zeros(grid)
        counts = np.asarray(json.loads(raw_counts), dtype=float) if raw_counts else np.zeros(models + 1)
        if len(sums) != grid:
            sums = np.zeros(grid)
        if len(counts) != models + 1:
            counts = np.zeros(models + 1)
        return Snapshot(sums, float(counts[-1]), counts[:-1])

    async def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        args = [
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
        return int(await self._commit(keys=self._keys(stream), args=args))

    async def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        raw = await self.client.hgetall(self._keys(stream)[2])
        totals = {"calls": 0.0, "quality": 0.0, "cost": 0.0}
        totals.update({(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()})
        return totals


class FleetPrice:
    """The quality (or budget) price of one stream, computed from state every replica shares.

    Thread- and task-safe: all state lives in the store, whose commit is atomic.
    """

    def __init__(
        self,
        mode: str,
        target: float,
        curve: DualCurve | None,
        store: PriceStore,
        *,
        stream: str,
        caps: Sequence[float | None],
        window: int = WINDOW,
        prior_calls: int = PRIOR_CALLS,
    ) -> None:
        """Start (or join) a stream.

        Args:
            mode: ``"quality"``: the fleet's mean predicted quality ≥ ``target``; ``"budget"``: its mean
                predicted cost per call ≤ ``target``.
            target: The internal target (from :meth:`DualPrices.new_quality_stream
                <eccos_core.dual.DualPrices.new_quality_stream>` for a ``min_quality``).
            curve: The router's fitted curve (the training queries, mixed in while the window fills).
            store: Where the state lives.
            stream: The stream's key in the store (every replica of one stream must use the same).
            caps: Per model (pool order), the largest share of the fleet's recent calls it may serve; ``None``:
                no cap.
            window: Calls the decayed window holds (decay ``1 − 1/window`` per call).
            prior_calls: Weight of the training queries, in calls.
        """
        if mode not in ("quality", "budget"):
            raise InputError(f"mode must be 'quality' or 'budget', got {mode!r}")
        self.mode = mode
        self.target = float(target)
        self.curve = curve
        self.store = store
        self.stream = stream
        self.caps = np.array([-1.0 if c is None else float(c) for c in caps])
        self.decay = 1.0 - 1.0 / int(window)
        self.prior_calls = int(prior_calls) if curve is not None else 0
        grid = GRID_EXTRA if curve is None else np.union1d(np.asarray(curve.prices), GRID_EXTRA)
        self.grid = np.concatenate([[0.0], grid[grid > 0]])
        self.prior = (
            None
            if curve is None
            else np.interp(self.grid, curve.prices, curve.quality if mode == "quality" else curve.cost)
        )

    async def route(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> FleetDecision:
        """Price one call (length-M rows), pick its model in the fleet's state, and record it there."""
        quality = np.asarray(quality, dtype=float).reshape(-1)
        cost = np.asarray(cost, dtype=float).reshape(-1)
        allowed = np.asarray(allowed, dtype=bool).reshape(-1)
        if not allowed.any():
            raise InputError("no model is allowed for this call")
        snapshot = await self.store.read(self.stream, len(self.grid), len(quality))
        counts, calls = snapshot.counts * self.decay, snapshot.calls * self.decay
        full = ~fits_cap(counts, calls, self.caps)
        open_ = allowed & ~full
        if not open_.any():  # every allowed model at its cap: the commit picks the one with most room
            open_ = allowed
        hull = lower_hulls(cost[None, :], quality[None, :], open_[None, :])
        steps = (hull.breaks[0][None, :] <= self.grid[:, None]).sum(axis=1)
        vector = (hull.quality if self.mode == "quality" else hull.cost)[0, steps]
        price, met = self._price(snapshot.sums * self.decay + vector, calls + 1.0)
        order = _order(quality, cost, open_, price, hull.models[0, int((hull.breaks[0] <= price).sum())])
        j = await self.store.commit(self.stream, self.decay, Commit(vector, order, quality, cost), self.caps)
        return FleetDecision(
            model=j,
            price=price,
            order=(j, *(k for k in order if k != j)),
            target=self.target,
            met=met,
            calls=calls + 1.0,
            capped=tuple(int(k) for k in np.flatnonzero(allowed & full)),
            shared=self.store.shared,
        )

    def _price(self, sums: np.ndarray, calls: float) -> tuple[float, bool]:
        """The smallest grid price (quality) or largest (budget) at which the mixed window meets the target."""
        weight = self.prior_calls / (self.prior_calls + calls)
        return price_for_target(self.grid, sums / calls, self.prior, weight, self.target, self.mode)

    async def totals(self) -> dict[str, float]:
        """Fleet totals since the stream began: calls, and the summed predicted quality and cost of the picks."""
        return await self.store.totals(self.stream)


def _order(quality: np.ndarray, cost: np.ndarray, open_: np.ndarray, price: float, first: int) -> tuple[int, ...]:
    columns = np.flatnonzero(open_)
    if math.isfinite(price):
        rest = sorted(columns, key=lambda k: (cost[k] - price * quality[k], -quality[k]))
    else:
        rest = sorted(columns, key=lambda k: (-quality[k], cost[k]))
    return (int(first), *(int(k) for k in rest if k != first))


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

    async def _call(self, name: str, *args: Any) -> Any:
        if time.monotonic() >= self._down_until:
            try:
                return await getattr(self.primary, name)(*args)
            except (OSError, asyncio.TimeoutError, ConnectionError) as error:
                self._fail(error)
            except Exception as error:  # redis-py's own errors (ConnectionError, TimeoutError, ResponseError)
                if type(error).__module__.split(".")[0] != "redis":
                    raise
                self._fail(error)
        return await getattr(self.local, name)(*args)

    def _fail(self, error: BaseException) -> None:
        if self.shared:
            logger.warning(
                "eccos fleet: Redis failed (%s); pricing with this process's state for %.0f s",
                type(error).__name__,
                self.retry_after,
            )
        self._down_until = time.monotonic() + self.retry_after

    async def read(self, stream: str, grid: int, models: int) -> Snapshot:
        """The stream's state now (zeros for a new stream)."""
        return await self._call("read", stream, grid, models)

    async def commit(self, stream: str, decay: float, change: Commit, caps: np.ndarray) -> int:
        """Add the call's vector and count its pick (the first model in ``change.order`` its cap allows)."""
        return await self._call("commit", stream, decay, change, caps)

    async def totals(self, stream: str) -> dict[str, float]:
        """Calls and summed predicted quality and cost of the picks since the stream began."""
        return await self._call("totals", stream)


def stream_key(fingerprint: str, models: Sequence[str], mode: str, goal: float) -> str:
    """A stream's key: what routes it (the router, the models) and what it keeps (``min_quality`` or budget)."""
    digest = hashlib.sha256(json.dumps([fingerprint, list(models)]).encode()).hexdigest()[:12]
    return f"{digest}:{'min_quality' if mode == 'quality' else 'budget'}={float(goal):.6g}"


def check_caps(caps: Mapping[str, float] | None, names: Sequence[str]) -> list[float | None]:
    """Share caps by model name → a per-column list; a typed error for unknown names or shares outside [0, 1]."""
    caps = dict(caps or {})
    unknown = sorted(set(caps) - set(names))
    if unknown:
        raise InputError(f"caps name models the router does not know: {unknown}; known: {list(names)}")
    out: list[float | None] = []
    for name in names:
        value = caps.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise InputError(f"cap of {name!r} must be a share of calls in [0, 1], got {value!r}")
            value = float(value)
        out.append(value)
    if all(v is not None for v in out) and sum(v for v in out if v is not None) < 1.0:
        raise InputError(f"the caps leave no room: their shares sum to {sum(v for v in out if v is not None):.3g} < 1")
    return out


__all__ = [
    "FailoverStore",
    "FleetDecision",
    "FleetPrice",
    "MemoryStore",
    "PriceStore",
    "RedisStore",
    "Snapshot",
    "check_caps",
    "stream_key",
]
