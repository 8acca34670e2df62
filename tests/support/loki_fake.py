"""A fake of Loki's documented query_range API on a real socket."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from connectors.loki import to_ns

_SELECTOR = re.compile(r'(\w+)="([^"]*)"')


class FakeLoki:
    """Enough of Loki: parameter validation as Loki does it, label selectors, limit and direction."""

    def __init__(self, *, tenant: str | None = None) -> None:
        self.entries: list[tuple[int, dict[str, str], str]] = []
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
        self.tenant = tenant
        self.fail_status: int | None = None
        self.metric = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((params, dict(self.headers)))
                if url.path != "/loki/api/v1/query_range":
                    return self._send(404, "404 page not found\n")
                if fake.tenant is not None and self.headers.get("X-Scope-OrgID") != fake.tenant:
                    return self._send(401, "no org id\n")
                if fake.fail_status:
                    return self._send(fake.fail_status, "too many outstanding requests\n")
                error = fake.validate(params)
                if error:
                    return self._send(400, error + "\n")
                self._send(200, json.dumps(fake.answer(params)), "application/json")

            def _send(self, status: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def validate(self, params: dict[str, str]) -> str:
        if not params.get("query"):
            return "parse error : syntax error: unexpected $end"
        try:
            start, end = int(params["start"]), int(params["end"])
        except (KeyError, ValueError):
            return "invalid start/end"
        if start < 10**18 or end < 10**18:  # seconds or ms would be a date in 1970
            return "start/end must be in nanoseconds for this fake"
        if end <= start:
            return "end timestamp must not be before or equal to start time"
        if not params.get("limit", "100").isdigit():
            return "invalid limit"
        if params.get("direction", "backward") not in ("forward", "backward"):
            return "invalid direction"
        return ""

    def answer(self, params: dict[str, str]) -> dict[str, Any]:
        if self.metric:
            return {"status": "success", "data": {"resultType": "matrix", "result": []}}
        wanted = dict(_SELECTOR.findall(params["query"].split("}")[0]))
        start, end = int(params["start"]), int(params["end"])
        hits = [
            e
            for e in self.entries
            if start <= e[0] < end and all(e[1].get(k) == v for k, v in wanted.items())
        ]
        hits.sort(key=lambda e: e[0], reverse=params.get("direction", "backward") == "backward")
        hits = hits[: int(params.get("limit", "100"))]
        streams: dict[str, dict[str, Any]] = {}
        for ns, labels, line in hits:
            key = json.dumps(labels, sort_keys=True)
            streams.setdefault(key, {"stream": labels, "values": []})["values"].append([str(ns), line])
        return {"status": "success", "data": {"resultType": "streams", "result": list(streams.values())}}

    def add(self, at: datetime, line: str, **labels: str) -> None:
        self.entries.append((to_ns(at), labels or {"app": "api"}, line))

    def __enter__(self) -> FakeLoki:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
