"""Steady load on the shop from several users, so error ratios and affected users are real numbers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx

#: (method, route, weight): browsing dominates, a fifth of requests check out.
MIX = [
    ("GET", "/api/products", 4),
    ("POST", "/api/cart", 2),
    ("POST", "/api/checkout", 2),
    ("GET", "/api/recommendations", 2),
]


class LoadGenerator:
    """`users` threads, each a user looping over the request mix with a short think time."""

    def __init__(self, base_url: str, users: int = 6, think_seconds: float = 0.04, seed: int = 7) -> None:
        self.base_url = base_url
        self.users = users
        self.think = think_seconds
        self.seed = seed
        self.codes: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> LoadGenerator:
        for i in range(self.users):
            t = threading.Thread(target=self._user, args=(f"u{i + 1:02d}", i), daemon=True, name=f"load-u{i}")
            t.start()
            self._threads.append(t)
        return self

    def _user(self, user: str, index: int) -> None:
        rnd = random.Random(self.seed * 1000 + index)  # noqa: S311 - load shape, not security
        routes = [(m, r) for m, r, w in MIX for _ in range(w)]
        with httpx.Client(base_url=self.base_url, headers={"X-User": user}, timeout=5) as client:
            while not self._stop.is_set():
                method, route = rnd.choice(routes)
                try:
                    code = client.request(method, route).status_code
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.codes[code] += 1
                self._stop.wait(self.think * (0.5 + rnd.random()))

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 10
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
