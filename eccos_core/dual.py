"""Per-call routing at batch prices: a price on quality that keeps the *mean* over a stream of calls.

The batch optimum of ECCOS sends query ``i`` to ``argmin_j c_ij − λ·a_ij`` for the right multiplier λ of the
mean-quality constraint. A stream of single calls can do the same: price quality at λ and route each call on
its own. This module holds that price, the one per-call price of every entry point (``Router.complete``, the
shells, the LiteLLM Proxy plugin).

* **Fitted** (:class:`DualCurve`, at :meth:`Router.fit <eccos_core.router.Router.fit>`): the training queries'
  out-of-fold predictions are routed one at a time at a grid of prices, and the realized success of each
  price is measured (less one standard error, as the quality guard does). ``min_quality = α`` maps to the
  smallest price whose realized success reached α, and to the mean *predicted* quality that price bought:
  the stream's internal target (:meth:`Targets.per_call <eccos_core.targets.Targets.per_call>`).
* **Online** (:class:`StreamPrice`, one per ``min_quality`` or per-call budget): for every price on a grid the
  stream keeps the decayed sum over recent calls of the quality each call would get at that price; a call is
  routed at the smallest grid price at which those calls, mixed with the training distribution (whose weight
  fades as calls arrive), reach the internal target. When traffic turns harder the price rises until the recent
  calls' mean predicted quality is back on target; easier traffic makes it fall.

Budget streams are priced the same way: the largest price at which the mean predicted cost per call stays
within the per-call budget. The state lives in a store (:mod:`eccos_core.policies.stores`): this process's
memory (saved with the router as ``streams.json``) or a Redis every replica shares, so a fleet keeps one mean.

Caps: a per-batch cap has no meaning for one call. Per-call routing honours a cap of 0 (the model is excluded)
and the capability mask; share caps (at most a share of the stream's recent calls per model) are the fleet's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.errors import InputError
from eccos_core.optimize.budget import lower_hulls
from eccos_core.policies.stores import MAX_STREAMS, Commit, MemoryStore, PriceStore, Snapshot, fits_cap

logger = logging.getLogger("eccos.dual")

FORMAT = "eccos-prices/1"
LEGACY_FORMAT = "eccos-dual/1"
WINDOW = 1024
"""Calls a stream's price adapts to (its state decays by ``1 − 1/WINDOW`` per call). Shorter windows follow a
shift sooner but also chase short runs of one kind of query (paying to lift each run to the target); on the
shared data sets 1,024 kept the realized mean when the test split arrived sorted by task, where 512 fell up to
1.3 points short (``benchmarks/bench_dual.py``)."""
PRIOR_CALLS = 512
"""Weight of the training distribution in the price, in calls: with ``n`` (decayed) recent calls the training
queries weigh ``PRIOR_CALLS / (PRIOR_CALLS + n)`` (about a third once the window is full)."""
MAX_WINDOW = 1 << 20
"""Largest ``window`` / ``prior_calls`` a saved file may ask for."""
GRID_EXTRA = np.geomspace(1e-9, 1e2, 384)
"""Prices added to the fitted curve's own grid, so pools priced unlike the training pool still find a price
(USD per unit of predicted quality)."""


@dataclass(frozen=True)
class DualCurve:
    """What routing the training queries one at a time at each price did (out-of-fold predictions).

    All four sequences are indexed by price and non-decreasing.
    """

    prices: tuple[float, ...]
    """Prices λ (USD per unit of predicted quality), from 0 up to where every query takes its best model."""
    success: tuple[float, ...]
    """Realized success at each price, less ``z`` standard errors (isotonic in λ)."""
    quality: tuple[float, ...]
    """Mean predicted quality of the picks at each price."""
    cost: tuple[float, ...]
    """Mean predicted cost per call of the picks at each price (USD)."""
    queries: int
    """Training queries measured."""

    @classmethod
    def fit(
        cls, quality: np.ndarray, scores: np.ndarray, cost: np.ndarray, *, z: float = 1.0, points: int = 256
    ) -> DualCurve | None:
        """Route the out-of-fold predictions at every price the data distinguishes; measure each.

        Args:
            quality: N×M out-of-fold predicted p(success) (clean: in [0, 1]).
            scores: N×M logged scores (NaN where a model has no outcome: not offered).
            cost: N×M predicted cost of each pair (USD).
            z: Standard errors subtracted from measured success, as the quality guard does.
            points: Prices kept in the saved curve.

        Returns:
            The curve, or ``None`` when fewer than two queries have an outcome.
        """
        allowed = ~np.isnan(scores)
        usable = allowed.any(axis=1)
        if usable.sum() < 2:
            return None
        quality, scores, cost, allowed = quality[usable], scores[usable], cost[usable], allowed[usable]
        n = len(quality)
        filled = np.where(allowed, scores, 0.0)
        hulls = lower_hulls(cost, quality, allowed)
        rows = np.arange(n)[:, None]
        got = filled[rows, hulls.models]
        series = {
            "quality": hulls.quality,
            "cost": hulls.cost,
            "score": got,
            "score2": got**2,
        }
        breaks = hulls.breaks.ravel()
        finite = np.flatnonzero(np.isfinite(breaks))
        order = finite[np.argsort(breaks[finite], kind="stable")]
        sorted_breaks = breaks[order]
        if len(sorted_breaks):
            inner = np.quantile(sorted_breaks, np.linspace(0.0, 1.0, max(points - 2, 2)))
            grid = np.unique(np.concatenate([[0.0], inner, [sorted_breaks[-1] * 1.5]]))
        else:
            grid = np.array([0.0])
        upto = np.searchsorted(sorted_breaks, grid, side="right")
        sums = {}
        for key, values in series.items():
            steps = np.diff(values, axis=1).ravel()[order]
            cum = np.concatenate([[0.0], np.cumsum(steps)])
            sums[key] = (values[:, 0].sum() + cum[upto]) / n
        std = np.sqrt(np.maximum(sums["score2"] - sums["score"] ** 2, 0.0))
        guarded = sums["score"] - z * std / math.sqrt(n)
        from sklearn.isotonic import IsotonicRegression  # only when fitting

        success = IsotonicRegression(increasing=True).fit(np.arange(len(grid)), guarded).predict(np.arange(len(grid)))
        curve = cls(
            prices=tuple(float(v) for v in grid),
            success=tuple(float(v) for v in success),
            quality=tuple(float(v) for v in np.maximum.accumulate(sums["quality"])),
            cost=tuple(float(v) for v in np.maximum.accumulate(sums["cost"])),
            queries=n,
        )
        logger.info(
            "dual price: realized success %.3f..%.3f over prices 0..%.3g on %d out-of-fold queries",
            curve.success[0],
            curve.success[-1],
            curve.prices[-1],
            n,
        )
        return curve

    @property
    def max_success(self) -> float:
        """The highest realized success per-call routing reached on held-out training queries."""
        return float(self.success[-1])

    def reachable(self, alpha: float) -> bool:
        """Whether per-call routing reached ``alpha`` in realized success on held-out training queries."""
        return alpha <= self.max_success + 1e-9

    def price(self, alpha: float) -> float:
        """Smallest price whose held-out realized success reached ``alpha`` (``inf`` above the range)."""
        success, prices = np.asarray(self.success), np.asarray(self.prices)
        if alpha > success[-1] + 1e-9:
            return math.inf
        k = int(np.searchsorted(success, alpha - 1e-12, side="left"))
        if k == 0:
            return float(prices[0])
        a0, a1, p0, p1 = success[k - 1], success[k], prices[k - 1], prices[k]
        frac = 1.0 if a1 <= a0 else (alpha - a0) / (a1 - a0)
        return float(p0 + frac * (p1 - p0))

    def quality_at(self, price: float) -> float:
        """Mean predicted quality per-call routing at ``price`` bought on the training queries."""
        return float(np.interp(price, self.prices, self.quality))

    def cost_at(self, price: float) -> float:
        """Mean predicted cost per call of per-call routing at ``price`` on the training queries."""
        return float(np.interp(price, self.prices, self.cost))

    def budget_price(self, budget: float) -> float:
        """Largest price whose mean predicted cost per call on the training queries stays within ``budget``."""
        cost, prices = np.asarray(self.cost), np.asarray(self.prices)
        if budget >= cost[-1]:
            return math.inf
        if budget < cost[0]:
            return 0.0
        k = int(np.searchsorted(cost, budget, side="right"))  # cost[k-1] <= budget < cost[k]
        c0, c1, p0, p1 = cost[k - 1], cost[k], prices[k - 1], prices[k]
        return float(p0 + (budget - c0) / (c1 - c0) * (p1 - p0)) if c1 > c0 else float(p0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "prices": list(self.prices),
            "success": list(self.success),
            "quality": list(self.quality),
            "cost": list(self.cost),
            "queries": self.queries,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DualCurve:
        """Inverse of :meth:`to_dict`."""
        fields = {k: tuple(float(v) for v in data[k]) for k in ("prices", "success", "quality", "cost")}
        if len({len(v) for v in fields.values()}) != 1 or not fields["prices"]:
            raise ValueError("the curve's prices, success, quality and cost must be non-empty and of one length")
        for key, values in fields.items():
            row = np.asarray(values)
            if not np.isfinite(row).all() or (np.diff(row) < 0).any():
                raise ValueError(f"the curve's {key} must be finite and non-decreasing")
        if fields["prices"][0] < 0 or not -1.0 <= fields["success"][0] <= fields["success"][-1] <= 1.0:
            raise ValueError("the curve's prices must be ≥ 0 and its success within [-1, 1]")
        if not 0.0 <= fields["quality"][0] <= fields["quality"][-1] <= 1.0 or fields["cost"][0] < 0:
            raise ValueError("the curve's quality must lie in [0, 1] and its cost be ≥ 0")
        queries = data["queries"]
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 2:
            raise ValueError(f"the curve's queries must be an integer ≥ 2, got {queries!r}")
        return cls(**fields, queries=queries)


@dataclass(frozen=True)
class Decision:
    """Where one call goes at its stream's price, and why."""

    model: int
    """Column of the chosen model (pool order)."""
    price: float
    """The price λ the call was routed at (``inf``: the best model, the target being out of reach)."""
    order: tuple[int, ...]
    """Every allowed, uncapped column by ``cost − price·quality``, the chosen one first (the fallback order)."""
    target: float
    """The stream's internal target: mean predicted quality (or, for a budget, mean predicted cost per call)."""
    met: bool
    """Whether the recent calls (mixed with the training queries) can meet the target at all: if not, the call
    went to its best model (or, for a budget, its cheapest)."""
    calls: float = 0.0
    """Decayed recent calls of the stream this price was computed from (this one included)."""
    capped: tuple[int, ...] = ()
    """Columns left out because the stream had filled their share cap."""
    shared: bool = False
    """Whether the state came from a shared store (False: this process alone)."""


class StreamPrice:
    """The price of one stream (one ``min_quality``, or one per-call budget) over a store.

    Thread- and task-safe: the state lives in the store, whose commit is atomic; :meth:`route` (sync) and
    :meth:`aroute` (async) read, price, and commit the call.
    """

    def __init__(
        self,
        mode: str,
        goal: float,
        target: float,
        curve: DualCurve | None,
        store: PriceStore | None = None,
        *,
        stream: str = "stream",
        caps: Sequence[float | None] | None = None,
        window: int = WINDOW,
        prior_calls: int = PRIOR_CALLS,
    ) -> None:
        """Start (or join) a stream.

        Args:
            mode: ``"quality"`` (keep the mean predicted quality ≥ ``target``) or ``"budget"`` (keep the mean
                predicted cost per call ≤ ``target``).
            goal: What the caller asked for (``min_quality`` or the per-call budget), for reports.
            target: The internal target the price keeps.
            curve: The fitted curve (the training queries, mixed in while calls arrive); ``None`` prices on
                recent calls alone (the first call then reaches the target on its own).
            store: Where the state lives (default: a fresh :class:`~eccos_core.policies.stores.MemoryStore`).
            stream: The stream's key in the store (every process sharing one stream uses the same).
            caps: Per model (pool order), the largest share of the stream's recent calls it may serve;
                ``None``: no caps.
            window: Calls the decayed state holds (decay ``1 − 1/window`` per call).
            prior_calls: Weight of the training queries, in calls.
        """
        if mode not in ("quality", "budget"):
            raise InputError(f"mode must be 'quality' or 'budget', got {mode!r}")
        self.mode = mode
        self.goal = float(goal)
        self.target = float(target)
        self.curve = curve
        self.store: PriceStore = store if store is not None else MemoryStore()
        self.stream = stream
        self.caps = None if caps is None else np.array([-1.0 if c is None else float(c) for c in caps])
        self.window = int(window)
        self.decay = 1.0 - 1.0 / self.window
        self.prior_calls = int(prior_calls) if curve is not None else 0
        grid = GRID_EXTRA if curve is None else np.union1d(np.asarray(curve.prices), GRID_EXTRA)
        self.grid = np.concatenate([[0.0], grid[grid > 0]])
        values = None if curve is None else (curve.quality if mode == "quality" else curve.cost)
        self.prior = None if values is None else np.interp(self.grid, curve.prices, values)  # type: ignore[union-attr]
        self.last_price = math.nan
        """Price of the most recent call routed by this process."""
        self.last_calls = 0.0
        """Decayed recent calls the most recent price was computed from."""

    # ------------------------------------------------------------------------------------------- routing
    def route(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None) -> Decision:
        """Price one call (quality, cost, allowed: length-M rows), pick its model and record it in the store."""
        quality, cost, allowed = _row(quality), _row(cost), _mask(allowed, len(np.ravel(quality)))
        snapshot = self.store.read(self.stream, len(self.grid), len(quality))
        change, decision = self._decide(snapshot, quality, cost, allowed)
        return self._picked(decision, self.store.commit(self.stream, self.decay, change, self._caps(len(quality))))

    async def aroute(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None) -> Decision:
        """:meth:`route`, async (a shared store's I/O does not block the event loop)."""
        quality, cost, allowed = _row(quality), _row(cost), _mask(allowed, len(np.ravel(quality)))
        snapshot = await self.store.aread(self.stream, len(self.grid), len(quality))
        change, decision = self._decide(snapshot, quality, cost, allowed)
        pick = await self.store.acommit(self.stream, self.decay, change, self._caps(len(quality)))
        return self._picked(decision, pick)

    def replay(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Route N calls one at a time, in row order (offline evaluation); returns each call's column."""
        quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
        ok = np.ones_like(quality, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        return np.array([self.route(quality[i], cost[i], ok[i]).model for i in range(len(quality))], dtype=int)

    def _caps(self, models: int) -> np.ndarray:
        return np.full(models, -1.0) if self.caps is None else self.caps

    def _decide(
        self, snapshot: Snapshot, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray
    ) -> tuple[Commit, Decision]:
        """The call's vector on the grid, its price and the models in price order (before the commit picks)."""
        if not allowed.any():
            raise InputError("no model is allowed for this call")
        caps = self._caps(len(quality))
        counts, calls = snapshot.counts * self.decay, snapshot.calls * self.decay
        full = ~fits_cap(counts, calls, caps)
        open_ = allowed & ~full
        if not open_.any():  # every allowed model at its cap: the commit picks the one with most room
            open_ = allowed
        hull = lower_hulls(cost[None, :], quality[None, :], open_[None, :])
        steps = (hull.breaks[0][None, :] <= self.grid[:, None]).sum(axis=1)
        vector = (hull.quality if self.mode == "quality" else hull.cost)[0, steps]
        calls += 1.0
        weight = self.prior_calls / (self.prior_calls + calls)
        recent = (snapshot.sums * self.decay + vector) / calls
        price, met = price_for_target(self.grid, recent, self.prior, weight, self.target, self.mode)
        first = int(hull.models[0, int((hull.breaks[0] <= price).sum())])
        order = _order(quality, cost, open_, price, first)
        capped = tuple(int(k) for k in np.flatnonzero(allowed & full))
        decision = Decision(first, price, order, self.target, met, calls, capped, self.store.shared)
        return Commit(vector, order, quality, cost), decision

    def _picked(self, decision: Decision, j: int) -> Decision:
        self.last_price, self.last_calls = decision.price, decision.calls
        order = (j, *(k for k in decision.order if k != j))
        return Decision(
            j, decision.price, order, decision.target, decision.met, decision.calls, decision.capped, decision.shared
        )

    # ------------------------------------------------------------------------------------------- reports
    def totals(self) -> dict[str, float]:
        """Totals since the stream began (every process sharing it): calls, summed predicted quality and cost."""
        return self.store.totals(self.stream)

    async def atotals(self) -> dict[str, float]:
        """:meth:`totals`, async."""
        return await self.store.atotals(self.stream)

    def stats(self) -> dict[str, Any]:
        """What the stream has done: calls, mean predicted quality and cost per call, the last price."""
        totals = self.totals()
        calls = int(totals["calls"])
        return {
            "mode": self.mode,
            "goal": self.goal,
            "target": self.target,
            "calls": calls,
            "mean_predicted_quality": totals["quality"] / calls if calls else None,
            "mean_predicted_cost": totals["cost"] / calls if calls else None,
            "last_price": self.last_price if math.isfinite(self.last_price) else None,
            "window_calls": self.last_calls,
        }


def _row(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


def _mask(allowed: np.ndarray | None, models: int) -> np.ndarray:
    return np.ones(models, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).reshape(-1)


def _order(quality: np.ndarray, cost: np.ndarray, open_: np.ndarray, price: float, first: int) -> tuple[int, ...]:
    """Open columns by ``cost − price·quality`` (by quality when the target is out of reach), ``first`` first."""
    columns = np.flatnonzero(open_)
    if math.isfinite(price):
        rest = sorted(columns, key=lambda k: (cost[k] - price * quality[k], -quality[k]))
    else:
        rest = sorted(columns, key=lambda k: (-quality[k], cost[k]))
    return (int(first), *(int(k) for k in rest if k != first))


def price_for_target(
    prices: np.ndarray, recent: np.ndarray, prior: np.ndarray | None, weight: float, target: float, mode: str
) -> tuple[float, bool]:
    """The price a stream routes at: where its recent calls, mixed with the training queries, meet the target.

    Args:
        prices: Candidate prices, ascending.
        recent: Mean value (predicted quality, or cost for a budget) the recent calls' picks have at each price.
        prior: The same for the training queries (the fitted curve), or ``None``.
        weight: Weight of ``prior`` in the mix.
        target: Mean predicted quality to reach, or mean predicted cost per call to stay within.
        mode: ``"quality"``: the smallest price reaching the target; ``"budget"``: the largest within it.

    Returns:
        The price and whether the target can be met at all (else ``inf`` for quality: the best models; ``0``
        for a budget: the cheapest).
    """
    mixed = recent if prior is None else weight * prior + (1 - weight) * recent
    mixed = np.maximum.accumulate(mixed)  # rising in price; guards the search against rounding in the sums
    if mode == "quality":
        k = int(np.searchsorted(mixed, target - 1e-12, side="left"))
        return (float(prices[k]), True) if k < len(prices) else (math.inf, False)
    k = int(np.searchsorted(mixed, target * (1 + 1e-12), side="right"))  # mixed[:k] within budget
    if k == len(prices):
        return math.inf, True
    return (float(prices[k - 1]), True) if k > 0 else (0.0, False)


class DualPrices:
    """A router's per-call prices: the fitted curve and one stream per ``min_quality`` / budget, over a store.

    Routers over the same pool and targets may share a store (``Router.with_models``, a Redis for a fleet):
    stream keys carry ``namespace`` (a digest of what the price depends on), so other routers' streams never mix.
    """

    def __init__(
        self,
        curve: DualCurve | None = None,
        *,
        store: PriceStore | None = None,
        namespace: str = "",
        caps: Sequence[float | None] | None = None,
        window: int = WINDOW,
        prior_calls: int = PRIOR_CALLS,
    ) -> None:
        """Args: curve: fitted on out-of-fold predictions (``None``: streams learn their price from calls alone).

        store: where the streams live (default: this process's memory). namespace: prefix of the stream keys.
        caps: per model, the largest share of a stream's recent calls it may serve. window: calls each stream
        adapts to. prior_calls: weight of the training queries, in calls.
        """
        self.curve = curve
        self.store: PriceStore = store if store is not None else MemoryStore()
        self.namespace = namespace
        self.caps = None if caps is None else list(caps)
        self.window = int(window)
        self.prior_calls = int(prior_calls)
        self._lock = threading.Lock()
        self._streams: dict[str, StreamPrice] = {}

    @classmethod
    def fit(cls, quality: np.ndarray, scores: np.ndarray, cost: np.ndarray, **kwargs: Any) -> DualPrices:
        """Fit the curve on out-of-fold predictions (see :meth:`DualCurve.fit`)."""
        return cls(DualCurve.fit(quality, scores, cost), **kwargs)

    def over(self, curve: DualCurve | None, namespace: str) -> DualPrices:
        """These settings and this store over ``curve`` and ``namespace``.

        For a router over another pool, or refitted targets: its streams are its own, as their keys differ.
        """
        return DualPrices(
            curve,
            store=self.store,
            namespace=namespace,
            caps=self.caps,
            window=self.window,
            prior_calls=self.prior_calls,
        )

    # ------------------------------------------------------------------------------------------- streams
    def new_quality_stream(self, alpha: float, target: float) -> StreamPrice:
        """A fresh stream for ``min_quality = alpha`` at internal ``target``, in a private memory store."""
        return self._new("quality", alpha, target, MemoryStore(), quality_key(alpha))

    def new_budget_stream(self, budget: float) -> StreamPrice:
        """A fresh stream keeping the mean predicted cost per call within ``budget``, in a private memory store."""
        return self._new("budget", budget, budget, MemoryStore(), budget_key(budget))

    def quality_stream(self, alpha: float, target: float) -> StreamPrice:
        """The stream for ``min_quality = alpha`` in this router's store (created on first use, at ``target``)."""
        return self._registered("quality", alpha, target, quality_key(alpha))

    def budget_stream(self, budget: float) -> StreamPrice:
        """The stream for a per-call budget in this router's store (created on first use)."""
        return self._registered("budget", budget, budget, budget_key(budget))

    def _new(self, mode: str, goal: float, target: float, store: PriceStore, key: str) -> StreamPrice:
        return StreamPrice(
            mode,
            goal,
            target,
            self.curve,
            store,
            stream=self.namespace + key,
            caps=self.caps,
            window=self.window,
            prior_calls=self.prior_calls,
        )

    def _registered(self, mode: str, goal: float, target: float, key: str) -> StreamPrice:
        with self._lock:
            stream = self._streams.pop(key, None)  # re-inserted: least recently used first
            if stream is None:
                stream = self._new(mode, goal, target, self.store, key)
            self._streams[key] = stream
            while len(self._streams) > MAX_STREAMS:
                del self._streams[next(iter(self._streams))]
            return stream

    def reset(self, min_quality: float | None = None, budget: float | None = None) -> None:
        """Forget the recent calls of one stream (by ``min_quality`` or ``budget``), or of every stream."""
        keys = [quality_key(min_quality)] if min_quality is not None else []
        keys += [budget_key(budget)] if budget is not None else []
        with self._lock:
            if not keys:
                keys = list(self._streams)
                if isinstance(self.store, MemoryStore):
                    keys += [k[len(self.namespace) :] for k in self.store.stream_keys() if k.startswith(self.namespace)]
            for key in dict.fromkeys(keys):
                self._streams.pop(key, None)
                self.store.reset(self.namespace + key)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Every stream's :meth:`StreamPrice.stats`, by key (``"min_quality=0.7"``, ``"budget=0.001"``)."""
        with self._lock:
            streams = dict(self._streams)
        return {key: stream.stats() for key, stream in streams.items()}

    # ------------------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any] | None:
        """JSON form of the streams (``streams.json``); ``None`` for none, or a shared store (its state lives there)."""
        if not isinstance(self.store, MemoryStore) or not len(self.store):
            return None
        return {"format": FORMAT, "window": self.window, "prior_calls": self.prior_calls, **self._store_dict()}

    def _store_dict(self) -> dict[str, Any]:
        assert isinstance(self.store, MemoryStore)
        with self._lock:
            goals = {key: [s.mode, s.goal, s.target] for key, s in self._streams.items()}
        return {"store": self.store.to_dict(), "goals": goals}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], curve: DualCurve | None, namespace: str) -> DualPrices:
        """Inverse of :meth:`to_dict` (and the streams of a router saved before, ``dual.json``: replayed).

        Raises ``ValueError``/``KeyError``/``TypeError`` on a malformed file.
        """
        fmt = data.get("format")
        if fmt not in (FORMAT, LEGACY_FORMAT):
            raise ValueError(f"format {fmt!r}, expected {FORMAT!r}")
        window, prior = data["window"], data["prior_calls"]
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be an integer in [1, {MAX_WINDOW}], got {window!r}")
        if isinstance(prior, bool) or not isinstance(prior, int) or not 0 <= prior <= MAX_WINDOW:
            raise ValueError(f"prior_calls must be an integer in [0, {MAX_WINDOW}], got {prior!r}")
        if fmt == LEGACY_FORMAT:
            return _from_legacy(data, curve, namespace, window, prior)
        prices = cls(
            curve, store=MemoryStore.from_dict(data["store"]), namespace=namespace, window=window, prior_calls=prior
        )
        for key, (mode, goal, target) in dict(data.get("goals") or {}).items():
            prices._registered(str(mode), float(goal), float(target), str(key))
        return prices


def _from_legacy(
    data: Mapping[str, Any], curve: DualCurve | None, namespace: str, window: int, prior: int
) -> DualPrices:
    """A router saved with ``dual.json`` (each stream's raw recent rows): the rows are replayed into a store."""
    prices = DualPrices(curve, namespace=namespace, window=min(window, MAX_WINDOW), prior_calls=prior)
    for key, saved in dict(data.get("streams") or {}).items():
        mode, goal, target = saved["mode"], float(saved["goal"]), float(saved["target"])
        if mode not in ("quality", "budget") or not (math.isfinite(goal) and math.isfinite(target)) or goal < 0:
            raise ValueError(f"a stream needs mode 'quality' or 'budget' and finite goal and target, got {mode!r}")
        quality = np.array([[math.nan if v is None else float(v) for v in row] for row in saved["quality"]])
        cost = np.array([[math.nan if v is None else float(v) for v in row] for row in saved["cost"]])
        if quality.shape != cost.shape:
            raise ValueError("a stream's saved quality and cost rows differ in shape")
        stream = prices._new(mode, goal, target, prices.store, str(key))
        if len(quality):
            stream.replay(np.nan_to_num(quality), np.nan_to_num(cost), ~np.isnan(quality))
        assert isinstance(prices.store, MemoryStore)
        prices.store.set_totals(stream.stream, saved["calls"], saved["sum_quality"], saved["sum_cost"])
    return prices


def prices_namespace(parts: Mapping[str, Any], names: Sequence[str]) -> str:
    """Stream-key prefix of a router: a digest of what its prices depend on (targets, models)."""
    digest = hashlib.sha256(json.dumps([parts, list(names)], sort_keys=True).encode()).hexdigest()[:12]
    return f"{digest}:"


def quality_key(alpha: float) -> str:
    """Stream key of a ``min_quality``."""
    return f"min_quality={float(alpha):.6g}"


def budget_key(budget: float) -> str:
    """Stream key of a per-call budget."""
    return f"budget={float(budget):.6g}"


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
    "Decision",
    "DualCurve",
    "DualPrices",
    "StreamPrice",
    "budget_key",
    "check_caps",
    "price_for_target",
    "prices_namespace",
    "quality_key",
]
