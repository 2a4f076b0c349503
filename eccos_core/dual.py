"""Per-call routing at batch prices: a price on quality that keeps the *mean* over a stream of calls.

The batch optimum of ECCOS sends query ``i`` to ``argmin_j c_ij − λ·a_ij`` for the right multiplier λ of the
mean-quality constraint. A stream of single calls can do the same: price quality at λ and route each call on
its own. This module holds that price.

* **Fitted** (:class:`DualCurve`, at :meth:`Router.fit <eccos_core.router.Router.fit>`): the training queries'
  out-of-fold predictions are routed one at a time at a grid of prices, and the realized success of each
  price is measured (less one standard error, as the quality guard does). ``min_quality = α`` maps to the
  smallest price whose realized success reached α, and to the mean *predicted* quality that price bought:
  the stream's internal target.
* **Online** (:class:`OnlinePrice`, one per ``min_quality`` or per-call budget): the price of each call is the
  one at which a window of recent calls, mixed with the training distribution (whose weight fades as the
  window fills), reaches the internal target. When traffic turns harder, the price rises until the recent
  calls' mean predicted quality is back on target; easier traffic makes it fall.

Budget streams are priced the same way: the price is the largest at which the mean predicted cost per call
stays within the per-call budget. State is per :class:`DualPrices` (one per router), thread-safe, saved with
the router as ``dual.json`` and resettable.

Caps: a per-batch cap has no meaning for one call. Per-call routing honours a cap of 0 (the model is excluded)
and the capability mask; it prices no rate caps.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.optimize.budget import Hulls, lower_hulls

logger = logging.getLogger("eccos.dual")

FORMAT = "eccos-dual/1"
WINDOW = 1024
"""Recent calls a stream's price adapts to. Shorter windows follow a shift sooner but also chase short runs of
one kind of query (paying to lift each run to the target); on the shared data sets 1,024 kept the realized mean
when the test split arrived sorted by task, where 512 fell up to 1.3 points short (``benchmarks/bench_dual.py``)."""
PRIOR_CALLS = 512
"""Weight of the training distribution in the price, in calls: with ``n`` calls in the window the training
queries weigh ``PRIOR_CALLS / (PRIOR_CALLS + n)`` (a third once the window is full)."""
MAX_STREAMS = 64
MAX_WINDOW = 1 << 20
"""Largest ``window`` / ``prior_calls`` a saved file may ask for (a stream keeps ``window`` recent calls)."""
"""Streams a router keeps; past it the least recently used one is dropped (a caller computing a fresh
``min_quality`` per call would otherwise grow the state without bound)."""


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
    """Where one call goes at its stream's price."""

    model: int
    """Column of the chosen model."""
    price: float
    """The price λ the call was routed at (``inf``: the best model, the target being out of reach)."""
    order: tuple[int, ...]
    """Every allowed column by ``cost − price·quality``, the chosen one first (the fallback order)."""
    target: float
    """The stream's internal target: mean predicted quality (or, for a budget, mean predicted cost per call)."""
    met: bool
    """Whether the recent calls (mixed with the training queries) can meet the target at all: if not, the call
    went to its best model (or, for a budget, its cheapest)."""


class OnlinePrice:
    """The price of one stream (one ``min_quality``, or one per-call budget) and the recent calls it adapts to.

    Thread-safe: :meth:`route` prices, picks and records a call under one lock.
    """

    def __init__(
        self,
        mode: str,
        goal: float,
        target: float,
        curve: DualCurve | None,
        *,
        window: int = WINDOW,
        prior_calls: int = PRIOR_CALLS,
    ) -> None:
        """Start a stream.

        Args:
            mode: ``"quality"`` (keep the mean predicted quality ≥ ``target``) or ``"budget"`` (keep the mean
                predicted cost per call ≤ ``target``).
            goal: What the caller asked for (``min_quality`` or the per-call budget), for reports.
            target: The internal target the price keeps.
            curve: The fitted curve (the training distribution, mixed in while the window fills); ``None``
                prices on recent calls alone (the first call then reaches the target on its own).
            window: Recent calls kept.
            prior_calls: Weight of the training distribution, in calls.
        """
        if mode not in ("quality", "budget"):
            raise ValueError(f"mode must be 'quality' or 'budget', got {mode!r}")
        self.mode = mode
        self.goal = float(goal)
        self.target = float(target)
        self.curve = curve
        self.window = int(window)
        self.prior_calls = int(prior_calls) if curve is not None else 0
        self._lock = threading.Lock()
        self._rows: Hulls | None = None
        self._raw_q: np.ndarray | None = None
        self._raw_c: np.ndarray | None = None
        self._count = 0
        self._next = 0
        self.calls = 0
        """Calls routed since the stream started or was reset."""
        self.sum_quality = 0.0
        """Sum of the predicted quality of every call's pick."""
        self.sum_cost = 0.0
        """Sum of the predicted cost of every call's pick (USD)."""
        self.last_price = math.nan
        """Price of the most recent call."""

    # ------------------------------------------------------------------------------------------- routing
    def route(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None) -> Decision:
        """Price one call (quality, cost and allowed: length-M rows), pick its model and record it."""
        quality = np.asarray(quality, dtype=float).reshape(1, -1)
        cost = np.asarray(cost, dtype=float).reshape(1, -1)
        ok = np.ones_like(quality, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).reshape(1, -1)
        hull = lower_hulls(cost, quality, ok)
        with self._lock:
            j, price, met = self._route_locked(hull, 0, quality[0], cost[0], ok[0])
        allowed_columns = np.flatnonzero(ok[0])
        if math.isfinite(price):  # the next best at the same price
            others = sorted(allowed_columns, key=lambda k: (cost[0, k] - price * quality[0, k], -quality[0, k]))
        else:  # the target is out of reach: by quality, cheaper first among ties
            others = sorted(allowed_columns, key=lambda k: (-quality[0, k], cost[0, k]))
        order = (j, *(int(k) for k in others if k != j))
        return Decision(j, price, order, self.target, met)

    def replay(self, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Route N calls one at a time, in row order (offline evaluation); returns each call's column."""
        quality = np.asarray(quality, dtype=float)
        cost = np.asarray(cost, dtype=float)
        ok = np.ones_like(quality, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        hulls = lower_hulls(cost, quality, ok)
        chosen = np.empty(len(quality), dtype=int)
        with self._lock:
            for i in range(len(quality)):
                chosen[i], _, _ = self._route_locked(hulls, i, quality[i], cost[i], ok[i])
        return chosen

    def _route_locked(
        self, hulls: Hulls, i: int, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray
    ) -> tuple[int, float, bool]:
        self._push(hulls, i, quality, cost, allowed)
        price, met = self._price()
        step = int((hulls.breaks[i] <= price).sum())
        j = int(hulls.models[i, step])
        self.calls += 1
        self.sum_quality += float(hulls.quality[i, step])
        self.sum_cost += float(hulls.cost[i, step])
        self.last_price = price
        return j, price, met

    def _push(self, hulls: Hulls, i: int, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> None:
        m = hulls.models.shape[1]
        if self._rows is None:
            self._rows = Hulls(
                np.zeros((self.window, m), dtype=int),
                np.full((self.window, max(m - 1, 0)), np.inf),
                np.zeros((self.window, m)),
                np.zeros((self.window, m)),
            )
            self._raw_q = np.full((self.window, m), np.nan)
            self._raw_c = np.full((self.window, m), np.nan)
        k = self._next
        self._rows.models[k] = hulls.models[i]
        self._rows.breaks[k] = hulls.breaks[i]
        self._rows.quality[k] = hulls.quality[i]
        self._rows.cost[k] = hulls.cost[i]
        self._raw_q[k] = np.where(allowed, quality, np.nan)  # type: ignore[index]
        self._raw_c[k] = np.where(allowed, cost, np.nan)  # type: ignore[index]
        self._next = (k + 1) % self.window
        self._count = min(self._count + 1, self.window)

    def _price(self) -> tuple[float, bool]:
        """The price at which the recent calls, mixed with the training queries, meet the target.

        Returns the price and whether the target can be met at all (else ``inf`` for quality: the best models;
        ``0`` for a budget: the cheapest).
        """
        rows = self._rows
        n = self._count
        assert rows is not None
        values = (rows.quality if self.mode == "quality" else rows.cost)[:n]
        breaks = rows.breaks[:n].ravel()
        steps = np.diff(values, axis=1).ravel()
        finite = np.isfinite(breaks)
        breaks, steps = breaks[finite], steps[finite]
        order = np.argsort(breaks, kind="stable")
        breaks = breaks[order]
        cum = np.concatenate([[0.0], np.cumsum(steps[order])]) + values[:, 0].sum()
        curve = self.curve
        candidates = breaks if curve is None else np.union1d(breaks, curve.prices)
        candidates = np.concatenate([[0.0], candidates])
        recent = cum[np.searchsorted(breaks, candidates, side="right")] / n
        weight = self.prior_calls / (self.prior_calls + n)
        prior = None
        if curve is not None and weight > 0:
            prior = np.interp(candidates, curve.prices, curve.quality if self.mode == "quality" else curve.cost)
        return price_for_target(candidates, recent, prior, weight, self.target, self.mode)

    # ------------------------------------------------------------------------------------------- reports
    def stats(self) -> dict[str, Any]:
        """What the stream has done: calls, mean predicted quality and cost per call, the last price."""
        with self._lock:
            calls = self.calls
            return {
                "mode": self.mode,
                "goal": self.goal,
                "target": self.target,
                "calls": calls,
                "mean_predicted_quality": self.sum_quality / calls if calls else None,
                "mean_predicted_cost": self.sum_cost / calls if calls else None,
                "last_price": None if not math.isfinite(self.last_price) else self.last_price,
                "window_calls": self._count,
            }

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the settings, the counters and the window's raw rows (oldest first; null = not allowed)."""
        with self._lock:
            n, k = self._count, self._next
            index = [(k - n + t) % self.window for t in range(n)]
            rows_q = [] if self._raw_q is None else [_json_row(self._raw_q[t]) for t in index]
            rows_c = [] if self._raw_c is None else [_json_row(self._raw_c[t]) for t in index]
            return {
                "mode": self.mode,
                "goal": self.goal,
                "target": self.target,
                "window": self.window,
                "prior_calls": self.prior_calls,
                "calls": self.calls,
                "sum_quality": self.sum_quality,
                "sum_cost": self.sum_cost,
                "quality": rows_q,
                "cost": rows_c,
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], curve: DualCurve | None) -> OnlinePrice:
        """Inverse of :meth:`to_dict` (``ValueError`` on a mode, number or window a stream cannot have)."""
        mode, goal, target, window = data["mode"], float(data["goal"]), float(data["target"]), data["window"]
        if mode not in ("quality", "budget") or not (math.isfinite(goal) and math.isfinite(target)) or goal < 0:
            raise ValueError(f"a stream needs mode 'quality' or 'budget' and finite goal and target, got {mode!r}")
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"a stream's window must be an integer in [1, {MAX_WINDOW}], got {window!r}")
        state = cls(mode, goal, target, curve, window=window, prior_calls=int(data["prior_calls"]))
        quality = np.array([[math.nan if v is None else float(v) for v in row] for row in data["quality"]])
        cost = np.array([[math.nan if v is None else float(v) for v in row] for row in data["cost"]])
        if len(quality):
            if quality.shape != cost.shape:
                raise ValueError("a stream's saved quality and cost rows differ in shape")
            allowed = ~np.isnan(quality)
            hulls = lower_hulls(np.nan_to_num(cost), np.nan_to_num(quality), allowed)
            for i in range(len(quality)):
                state._push(hulls, i, quality[i], cost[i], allowed[i])
        state.calls = int(data["calls"])
        state.sum_quality = float(data["sum_quality"])
        state.sum_cost = float(data["sum_cost"])
        return state


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


def _json_row(row: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in row.tolist()]


class DualPrices:
    """A router's per-call prices: the fitted curve and one online stream per ``min_quality`` / budget."""

    def __init__(self, curve: DualCurve | None = None, *, window: int = WINDOW, prior_calls: int = PRIOR_CALLS) -> None:
        """Args: curve: fitted on out-of-fold predictions (``None``: streams learn their price from calls alone).

        window: recent calls each stream adapts to. prior_calls: weight of the training queries, in calls.
        """
        self.curve = curve
        self.window = int(window)
        self.prior_calls = int(prior_calls)
        self._lock = threading.Lock()
        self._streams: dict[str, OnlinePrice] = {}

    @classmethod
    def fit(cls, quality: np.ndarray, scores: np.ndarray, cost: np.ndarray, **kwargs: Any) -> DualPrices:
        """Fit the curve on out-of-fold predictions (see :meth:`DualCurve.fit`)."""
        return cls(DualCurve.fit(quality, scores, cost), **kwargs)

    def fresh(self) -> DualPrices:
        """The same curve and settings with no streams (a router re-pointed at another pool starts its own)."""
        return self.with_curve(self.curve)

    def with_curve(self, curve: DualCurve | None) -> DualPrices:
        """These settings over ``curve``, with no streams (a refit starts every stream afresh on its new curve)."""
        return DualPrices(curve, window=self.window, prior_calls=self.prior_calls)

    # ------------------------------------------------------------------------------------------- streams
    def new_quality_stream(self, alpha: float, target: float) -> OnlinePrice:
        """A fresh stream for ``min_quality = alpha`` at internal ``target`` (``Targets.per_call``), not registered."""
        return OnlinePrice("quality", alpha, target, self.curve, window=self.window, prior_calls=self.prior_calls)

    def new_budget_stream(self, budget: float) -> OnlinePrice:
        """A fresh stream keeping the mean predicted cost per call within ``budget``, not registered."""
        return OnlinePrice("budget", budget, budget, self.curve, window=self.window, prior_calls=self.prior_calls)

    def quality_stream(self, alpha: float, target: float) -> OnlinePrice:
        """The router's stream for ``min_quality = alpha`` (created on first use, at ``target``)."""
        key = quality_key(alpha)
        with self._lock:
            stream = self._streams.pop(key, None)
            if stream is None:
                stream = self.new_quality_stream(alpha, target)
            return self._keep(key, stream)

    def budget_stream(self, budget: float) -> OnlinePrice:
        """The router's stream for a per-call budget (created on first use)."""
        key = budget_key(budget)
        with self._lock:
            stream = self._streams.pop(key, None)
            if stream is None:
                stream = self.new_budget_stream(budget)
            return self._keep(key, stream)

    def _keep(self, key: str, stream: OnlinePrice) -> OnlinePrice:
        """Store ``stream`` as the most recently used; drop the least recently used past :data:`MAX_STREAMS`."""
        self._streams[key] = stream
        while len(self._streams) > MAX_STREAMS:
            dropped = next(iter(self._streams))
            logger.info("dual price: more than %d streams; dropping the least recently used, %s", MAX_STREAMS, dropped)
            del self._streams[dropped]
        return stream

    def reset(self, min_quality: float | None = None, budget: float | None = None) -> None:
        """Forget the recent calls of one stream (by ``min_quality`` or ``budget``), or of every stream."""
        with self._lock:
            if min_quality is None and budget is None:
                self._streams.clear()
            if min_quality is not None:
                self._streams.pop(quality_key(min_quality), None)
            if budget is not None:
                self._streams.pop(budget_key(budget), None)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Every stream's :meth:`OnlinePrice.stats`, by key (``"min_quality=0.7"``, ``"budget=0.001"``)."""
        with self._lock:
            streams = dict(self._streams)
        return {key: stream.stats() for key, stream in streams.items()}

    # ------------------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON form: the curve and every stream."""
        with self._lock:
            streams = dict(self._streams)
        return {
            "format": FORMAT,
            "window": self.window,
            "prior_calls": self.prior_calls,
            "curve": None if self.curve is None else self.curve.to_dict(),
            "streams": {key: stream.to_dict() for key, stream in streams.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DualPrices:
        """Inverse of :meth:`to_dict` (raises ``ValueError``/``KeyError``/``TypeError`` on a malformed file)."""
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        curve = None if data.get("curve") is None else DualCurve.from_dict(data["curve"])
        window, prior = data["window"], data["prior_calls"]
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be an integer in [1, {MAX_WINDOW}], got {window!r}")
        if isinstance(prior, bool) or not isinstance(prior, int) or not 0 <= prior <= MAX_WINDOW:
            raise ValueError(f"prior_calls must be an integer in [0, {MAX_WINDOW}], got {prior!r}")
        prices = cls(curve, window=window, prior_calls=prior)
        for key, stream in dict(data.get("streams") or {}).items():
            prices._streams[str(key)] = OnlinePrice.from_dict(stream, curve)
        return prices


def quality_key(alpha: float) -> str:
    """Stream key of a ``min_quality``."""
    return f"min_quality={float(alpha):.6g}"


def budget_key(budget: float) -> str:
    """Stream key of a per-call budget."""
    return f"budget={float(budget):.6g}"


__all__ = ["Decision", "DualCurve", "DualPrices", "OnlinePrice", "budget_key", "price_for_target", "quality_key"]
