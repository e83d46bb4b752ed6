"""Progress, rates and cancelling for long analyses.

* :class:`Cancelled` is what every stage raises when the user asked to stop.
* :class:`RateMeter` turns ``{"stage", "done", "total"}`` events into events that also carry
  ``rate`` (units per second) and ``eta_seconds``, so the UI and the CLI can say "370 texts/s,
  about 58 min left" from the first batch on.
* :func:`stoppable` runs a library call that cannot be interrupted (a vectorizer fit, cleanlab's
  checks) so that a cancel still takes effect within a fraction of a second.
* :func:`poller` limits how often a ``should_stop`` that reads the store is asked.
* :func:`duration` (from :mod:`runtime.estimates`) is how seconds are printed everywhere.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from runtime.estimates import duration  # the one duration format (re-exported here)

T = TypeVar("T")
# What every long function takes as ``progress``: it gets {"stage", "done", "total", ...} events.
Progress = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """The user asked to stop: raised by every long function (embedding, detection, training)
    whose ``should_stop()`` returned True. The one cancellation class the job runner catches."""


class RateMeter:
    """Adds ``rate`` and ``eta_seconds`` to progress events, per stage.

    The rate is measured over a sliding window (``window`` seconds) from the stage's first
    counted event on, so it leaves out the stage's set-up (loading the model, tokenizing the
    first chunk) and anything done before the first event (a rerun's chunks found in the
    cache): a rate and a time left appear with the second event, e.g. the second batch.

    Examples
    --------
    >>> clock = iter([0.0, 2.0]).__next__
    >>> meter = RateMeter(clock=clock)
    >>> "rate" in meter({"stage": "embedding", "done": 64, "total": 1000})
    False
    >>> event = meter({"stage": "embedding", "done": 164, "total": 1000})
    >>> event["rate"], event["eta_seconds"]
    (50.0, 16.7)
    """

    def __init__(self, *, window: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._stage: Any = None
        self._samples: deque[tuple[float, float]] = deque()

    def __call__(self, info: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        stage, done, total = info.get("stage"), info.get("done"), info.get("total")
        if stage != self._stage:
            self._stage = stage
            self._samples = deque()
        if done is None or not total:
            return info
        self._samples.append((now, float(done)))
        if len(self._samples) < 2:
            return info
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        if now <= t0 or done <= d0:
            return info
        rate = (done - d0) / (now - t0)
        return {**info, "rate": round(rate, 1), "eta_seconds": round((total - done) / rate, 1)}


def poller(should_stop: Callable[[], bool] | None, *, every: float = 0.2) -> Callable[[], bool]:
    """``should_stop``, asked at most every ``every`` seconds (True once stays True).

    A job's ``should_stop`` reads the store; per-batch calls are cheap, but per-block calls of
    the neighbour search number in the hundreds of thousands.
    """
    state = {"last": float("-inf"), "stop": False}

    def stop() -> bool:
        if should_stop is None or state["stop"]:
            return state["stop"]
        now = time.monotonic()
        if now - state["last"] >= every:
            state["last"] = now
            state["stop"] = bool(should_stop())
        return state["stop"]

    return stop


def stoppable(
    fn: Callable[[], T],
    should_stop: Callable[[], bool] | None,
    *,
    poll: float = 0.1,
    executor: Executor | None = None,
) -> T:
    """``fn()``, or :class:`Cancelled` as soon as ``should_stop()`` turns True while it runs.

    For library calls that cannot be interrupted and take longer than a cancel may wait
    (cleanlab's Datalab checks take ~20 s at 1.36M rows). ``fn`` runs in a daemon thread (or
    on ``executor``) while this thread polls; on a stop it is abandoned: it finishes on its own
    and its result is dropped (in a job the process exits right after). Exceptions of ``fn``
    propagate unchanged.

    Pass an ``executor`` for many short calls, such as the encoder's batches: a thread per
    call also starts a fresh OpenMP team for torch each time, which cost a third of the
    encoding throughput on 2 cores.
    """
    if should_stop is None:
        return fn()
    if executor is not None:
        future = executor.submit(fn)
        while True:
            try:
                return future.result(timeout=poll)
            except TimeoutError:
                if should_stop():
                    raise Cancelled() from None
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="stoppable", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll)
        if thread.is_alive() and should_stop():
            raise Cancelled()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def describe(info: dict[str, Any] | None, *, scope: str = "") -> str:
    """One line for a progress event: counts, rate and time left, as far as known.

    ``scope`` follows "left" (" in this stage" where a whole job's time left is said too).

    Examples
    --------
    >>> describe({"done": 4096, "total": 1360000, "unit": "texts", "rate": 371.6,
    ...           "eta_seconds": 3649.0})
    '4,096 / 1,360,000 texts · 372 texts/s · about 1 h 1 min left'
    >>> describe({"stage": "cleanlab"})
    ''
    """
    info = info or {}
    done, total = info.get("done"), info.get("total")
    if done is None or not total:
        return ""
    unit = info.get("unit") or ""
    parts = [f"{done:,} / {total:,}" + (f" {unit}" if unit else "")]
    if info.get("rate"):
        parts.append(f"{info['rate']:,.0f} {unit or 'steps'}/s")
    if info.get("eta_seconds") is not None:
        parts.append(f"about {duration(info['eta_seconds'])} left{scope}")
    return " · ".join(parts)
