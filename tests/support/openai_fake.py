"""A scripted OpenAI-compatible chat-completions server over real HTTP on 127.0.0.1.

It speaks the documented wire format of `POST /v1/chat/completions` (non-streaming): bearer-key
check (401 in OpenAI's error shape otherwise), `tools` in the request, assistant messages with
`tool_calls` and `finish_reason: "tool_calls"`, and `usage` in every answer. Each request is
recorded so tests can assert what the client sent, e.g. that tool results came back as
`role: "tool"` messages. The script is a list of steps; a step is a list of tool calls
`(name, arguments)` where the name `"<output>"` means the agent's output tool, whatever it is
called in the request's `tools`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OUTPUT = "<output>"


class FakeOpenAI:
    def __init__(self, script: list[list[tuple[str, dict[str, Any]]]], *, api_key: str, model: str) -> None:
        self.script = script
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []
        #: Requests refused for a wrong key, by the key they presented.
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(
                        404,
                        {"error": {"message": f"unknown path {self.path}", "type": "invalid_request_error"}},
                    )
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    fake.rejected.append(str(self.headers.get("Authorization")))
                    self._send(
                        401,
                        {
                            "error": {
                                "message": "Incorrect API key provided",
                                "type": "invalid_request_error",
                                "code": "invalid_api_key",
                            }
                        },
                    )
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(
                        400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}}
                    )
                    return
                status, answer = fake.answer(body)
                self._send(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            index = len(self.requests) - 1
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return 400, {
                "error": {"message": "messages and model are required", "type": "invalid_request_error"}
            }
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        step = self.script[min(index, len(self.script) - 1)]
        calls = []
        for n, (name, args) in enumerate(step):
            if name == OUTPUT:
                outputs = [t for t in tools if t.startswith("final_result")]
                if not outputs:
                    return 400, {
                        "error": {"message": "no output tool offered", "type": "invalid_request_error"}
                    }
                name = outputs[0]
            elif name not in tools:
                return 400, {
                    "error": {"message": f"tool {name} not offered", "type": "invalid_request_error"}
                }
            calls.append(
                {
                    "id": f"call_{index}_{n}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            )
        prompt_tokens = sum(len(json.dumps(m)) for m in body["messages"]) // 4
        return 200, {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": calls},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 20,
                "total_tokens": prompt_tokens + 20,
            },
        }

    def tool_messages(self) -> list[dict[str, Any]]:
        """Every `role: tool` message the client sent in its last request."""
        last = self.requests[-1]["messages"] if self.requests else []
        return [m for m in last if m.get("role") == "tool"]
