"""Event-loop lag: how late a short timer fires, sampled while the server runs.

Opt-in with --loop-lag-interval; /api/health then reports the lag's median, p99 and
maximum over the last few seconds as `loop_lag_ms`. It is how benchmarks/log_latency.py
sees the server's own loop under load, which no outside client can time exactly.
"""

from __future__ import annotations

import asyncio
from collections import deque

WINDOW_SECONDS = 5.0


class LagProbe:
    def __init__(self, interval: float, *, window: float = WINDOW_SECONDS) -> None:
        self.interval = interval
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()  # (loop time, seconds late)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self._samples.append((now, max(0.0, now - due)))
            while self._samples[0][0] < now - self.window:
                self._samples.popleft()

    def summary(self) -> dict[str, float]:
        """Lateness in ms over the window: how many samples, p50, p99 and max."""
        lags = sorted(late for _, late in self._samples)
        if not lags:
            return {"samples": 0, "window_seconds": self.window}

        def at(q: float) -> float:
            return round(1000 * lags[round(q * (len(lags) - 1))], 3)

        return {
            "samples": len(lags),
            "window_seconds": self.window,
            "p50": at(0.5),
            "p99": at(0.99),
            "max": at(1.0),
        }
