"""The server's guards: a bounded queue and a concurrency limit per model, and per-request caps.

A `Gate` owns a pool of `concurrency` worker threads for one model. A request is admitted only
while fewer than `concurrency + queue` requests of that model are running or waiting; beyond
that it is refused at once (`Busy`, answered 503 with Retry-After), never dropped. The demo's
tabs and the API go through the same gates, so a page and a script share one model's limit.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from inference.web.settings import Limits
from utils.errors import UserError

T = TypeVar("T")


class Busy(UserError):
    """The model's queue is full (answered 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(UserError):
    """A request beyond the server's caps (answered 413)."""


class TimedOut(UserError):
    """A request that did not finish within the per-request timeout (answered 504)."""


class Gate:
    """At most `concurrency` calls of one model at once and `queue` more waiting; the rest refused."""

    def __init__(self, name: str, concurrency: int = 1, queue: int = 16, retry_after: int = 2):
        if concurrency < 1 or queue < 0:
            raise UserError("--concurrency must be at least 1 and --queue at least 0")
        self.name, self.concurrency, self.queue, self.retry_after = name, concurrency, queue, retry_after
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"gate-{name}")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0

    @property
    def capacity(self) -> int:
        return self.concurrency + self.queue

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"running": self._running, "waiting": self._admitted - self._running,
                    "concurrency": self.concurrency, "queue": self.queue}

    def submit(self, fn: Callable[[], T]) -> Future:
        """Admit `fn` (or raise Busy at once) and run it on the model's workers."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(f"{self.name} is busy: {self.concurrency} running and {self.queue} waiting already; "
                           f"retry in {self.retry_after}s", self.retry_after)
            self._admitted += 1

        def work() -> T:
            with self._lock:
                self._running += 1
            try:
                return fn()
            finally:
                with self._lock:
                    self._running -= 1

        try:
            future = self._pool.submit(work)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def run(self, fn: Callable[[], T], timeout: float) -> T:
        """Run `fn` through the gate from a plain thread (the demo's handlers); TimedOut after `timeout`."""
        future = self.submit(fn)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # still waiting: it never runs; already running: it finishes and frees its slot
            raise TimedOut(f"{self.name} did not finish within {timeout:g}s: ask for less (fewer images, "
                           "smaller size, fewer steps) or raise the server's --timeout") from None

    async def run_async(self, fn: Callable[[], T], timeout: float) -> T:
        """`run` for the API's event loop: admission is decided before the first await."""
        future = self.submit(fn)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise TimedOut(f"{self.name} did not finish within {timeout:g}s: ask for less (fewer images, "
                           "smaller size, fewer steps) or raise the server's --timeout") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Gates:
    """One `Gate` per served model, made on first use."""

    def __init__(self, concurrency: int, queue: int, retry_after: int):
        self.concurrency, self.queue, self.retry_after = concurrency, queue, retry_after
        self._gates: dict[str, Gate] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Gate:
        with self._lock:
            if key not in self._gates:
                self._gates[key] = Gate(key, self.concurrency, self.queue, self.retry_after)
            return self._gates[key]

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            gates = dict(self._gates)
        return {k: g.stats() for k, g in gates.items()}

    def close(self) -> None:
        with self._lock:
            for g in self._gates.values():
                g.close()


def check_request(limits: Limits, count: int, height: int | None, width: int | None,
                  steps: int | None, frames: bool = False) -> None:
    """Refuse (TooLarge) a request beyond the caps before anything loads or runs."""
    what = "frames" if frames else "images"
    cap = limits.max_frames if frames else limits.max_images
    if count > cap:
        raise TooLarge(f"{count} {what} asked for, this server allows at most {cap} per request: ask for fewer")
    for name, v in (("height", height), ("width", width)):
        if v is not None and v > limits.max_size:
            raise TooLarge(f"{name} {v} is above this server's limit of {limits.max_size} pixels: ask for less")
    if steps is not None and steps > limits.max_steps:
        raise TooLarge(f"{steps} steps asked for, this server allows at most {limits.max_steps}: ask for fewer")
    work = count * (height or limits.max_size) * (width or limits.max_size) * (steps or 1)
    if work > limits.max_work:
        raise TooLarge(f"{what} x height x width x steps = {work} is above this server's limit of "
                       f"{limits.max_work}: ask for fewer {what}, a smaller size or fewer steps")


def describe_limits(limits: Limits) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(limits)
