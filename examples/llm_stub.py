"""A loopback stand-in for the OpenAI and Anthropic HTTP APIs, so the examples and the
integration tests run real clients (and real agent loops) offline.

It is scripted by a *plan*: one list of tool calls per model turn. The stub is stateless: the
turn is the number of tool-calling assistant turns already in the conversation it receives, so
concurrent conversations never interfere. Once the plan is used up it answers with a final
text that quotes the tool results it was sent (so a test can see what the model was told).

Served routes (JSON, or server-sent events when the request asks for `stream`):
  POST /v1/chat/completions   OpenAI Chat Completions
  POST /v1/responses          OpenAI Responses
  POST /v1/messages           Anthropic Messages (any query string, e.g. ?beta=true)

    with LLMStub([[("search_docs", {"query": "x"})]]) as llm:
        client = openai.OpenAI(base_url=llm.openai_url, api_key="test")
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ToolCall = tuple[str, dict[str, Any]]
USAGE_IN, USAGE_OUT = 11, 7  # tokens reported per model turn


class LLMStub:
    def __init__(self, plan: list[list[ToolCall]], final_text: str = "done") -> None:
        self.plan = plan
        self.final_text = final_text
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> LLMStub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what the model would say ---------------------------------------------------------------
    def turn(self, done_turns: int) -> list[ToolCall] | None:
        return self.plan[done_turns] if done_turns < len(self.plan) else None

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": body})

    def final(self, tool_results: list[str]) -> str:
        if not tool_results:
            return self.final_text
        return f"{self.final_text}. Tool results: " + " | ".join(tool_results)


def _handler_for(stub: LLMStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._json(400, {"error": {"message": "body is not JSON"}})
            path = self.path.split("?", 1)[0]
            stub.record(path, body)
            if path.endswith("/chat/completions"):
                events, reply = _chat(stub, body)
            elif path.endswith("/responses"):
                events, reply = _responses(stub, body)
            elif path.endswith("/messages"):
                events, reply = _messages(stub, body)
            else:
                return self._json(404, {"error": {"message": f"no route {path}"}})
            if body.get("stream"):
                self._sse(events)
            else:
                self._json(200, reply)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, events: Iterator[tuple[str | None, Any]]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for name, data in events:
                text = data if isinstance(data, str) else json.dumps(data)
                prefix = f"event: {name}\n" if name else ""
                self.wfile.write(f"{prefix}data: {text}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

    return Handler


def _uid() -> str:
    """Tool-call ids are unique, as a real provider's are (Thoth checks each id once)."""
    return uuid.uuid4().hex[:16]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_content_text(part.get("text", part.get("content", ""))) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _split_args(args: dict[str, Any], pieces: int = 3) -> list[str]:
    """Argument JSON in fragments, as real streams deliver it."""
    text = json.dumps(args)
    step = max(1, len(text) // pieces)
    return [text[i : i + step] for i in range(0, len(text), step)]


# OpenAI Chat Completions --------------------------------------------------------------------
def _chat(stub: LLMStub, body: dict[str, Any]) -> tuple[Iterator[tuple[str | None, Any]], dict[str, Any]]:
    messages = body.get("messages") or []
    done = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    results = [_content_text(m.get("content")) for m in messages if m.get("role") == "tool"]
    calls = stub.turn(done)
    model = body.get("model", "stub")
    usage = {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT}
    base = {"id": f"chatcmpl-{done}", "created": 0, "model": model}
    tool_calls = [
        {"id": f"call_{_uid()}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls or [])
    ]
    if calls:
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": stub.final(results)}
        finish = "stop"
    reply = {**base, "object": "chat.completion", "usage": usage,
             "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}

    def events() -> Iterator[tuple[str | None, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}
        yield None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]}
        if calls:
            for i, (name, args) in enumerate(calls):
                head = {"index": i, "id": tool_calls[i]["id"], "type": "function", "function": {"name": name, "arguments": ""}}
                yield None, {**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]}
                for piece in _split_args(args):
                    delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                    yield None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        else:
            for word in str(message["content"]).split(" "):
                yield None, {**chunk, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
        yield None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield None, {**chunk, "choices": [], "usage": usage}
        yield None, "[DONE]"

    return events(), reply


# OpenAI Responses ---------------------------------------------------------------------------
def _responses(stub: LLMStub, body: dict[str, Any]) -> tuple[Iterator[tuple[str | None, Any]], dict[str, Any]]:
    items = body.get("input")
    items = items if isinstance(items, list) else [{"role": "user", "content": items}]
    done, previous = 0, None
    for item in items:  # one model turn = one run of consecutive function_call items
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call" and previous != "function_call":
            done += 1
        previous = kind
    results = [str(i.get("output")) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    calls = stub.turn(done)
    if calls:
        output: list[dict[str, Any]] = [
            {"type": "function_call", "id": f"fc_{_uid()}", "call_id": f"call_{_uid()}", "name": name,
             "arguments": json.dumps(args), "status": "completed"}
            for i, (name, args) in enumerate(calls)
        ]
    else:
        output = [{"type": "message", "id": f"msg_{done}", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": stub.final(results), "annotations": []}]}]
    reply = {
        "id": f"resp_{done}", "object": "response", "created_at": 0, "status": "completed",
        "model": body.get("model", "stub"), "output": output, "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    }

    def events() -> Iterator[tuple[str | None, Any]]:
        yield "response.created", {"type": "response.created", "sequence_number": 0,
                                   "response": {**reply, "status": "in_progress", "output": []}}
        for i, item in enumerate(output):
            yield "response.output_item.done", {"type": "response.output_item.done", "sequence_number": i + 1,
                                                "output_index": i, "item": item}
        yield "response.completed", {"type": "response.completed", "sequence_number": len(output) + 1,
                                     "response": reply}

    return events(), reply


# Anthropic Messages -------------------------------------------------------------------------
def _messages(stub: LLMStub, body: dict[str, Any]) -> tuple[Iterator[tuple[str | None, Any]], dict[str, Any]]:
    messages = body.get("messages") or []

    def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
        content = message.get("content")
        return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []

    asked = sum(1 for m in messages if m.get("role") == "assistant" and any(b.get("type") == "tool_use" for b in blocks(m)))
    # Some clients (the beta tool runner) send only the newest turn: count answered turns too.
    answered = sum(1 for m in messages if m.get("role") == "user" and any(b.get("type") == "tool_result" for b in blocks(m)))
    done = max(asked, answered)
    results = [_content_text(b.get("content")) for m in messages for b in blocks(m) if b.get("type") == "tool_result"]
    calls = stub.turn(done)
    if calls:
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": f"toolu_{_uid()}", "name": name, "input": args}
            for i, (name, args) in enumerate(calls)
        ]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": stub.final(results)}]
        stop = "end_turn"
    usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT}
    head = {"id": f"msg_{done}", "type": "message", "role": "assistant", "model": body.get("model", "stub"),
            "stop_sequence": None}
    reply = {**head, "content": content, "stop_reason": stop, "usage": usage}

    def events() -> Iterator[tuple[str | None, Any]]:
        yield "message_start", {"type": "message_start", "message": {
            **head, "content": [], "stop_reason": None, "usage": {"input_tokens": USAGE_IN, "output_tokens": 1}}}
        for i, block in enumerate(content):
            if block["type"] == "tool_use":
                yield "content_block_start", {"type": "content_block_start", "index": i,
                                              "content_block": {**block, "input": {}}}
                for piece in _split_args(block["input"]):
                    yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                                  "delta": {"type": "input_json_delta", "partial_json": piece}}
            else:
                yield "content_block_start", {"type": "content_block_start", "index": i,
                                              "content_block": {"type": "text", "text": ""}}
                yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                              "delta": {"type": "text_delta", "text": block["text"]}}
            yield "content_block_stop", {"type": "content_block_stop", "index": i}
        yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": USAGE_OUT}}
        yield "message_stop", {"type": "message_stop"}

    return events(), reply
