"""Turn a capture of the real wire into a recording the app can replay.

    python -m streamchat.importer CAPTURE OUT.jsonl [--repository R --path P --commit C | --url U]

CAPTURE is one of:

- a raw SSE stream (the bytes of one response body, ``event:``/``data:`` lines);
- a vcrpy / pytest-recording cassette (YAML with ``interactions``);
- a HAR file (a browser's or proxy's export, JSON with ``log.entries``);
- a test-proxy session record (JSON with ``Entries``, as in openai/openai-dotnet's
  ``tests/SessionRecords``).

Every streaming exchange becomes a stream of a turn: a request that sends tool outputs
(Assistants ``submit_tool_outputs``, a Responses ``function_call_output`` input, a Chat
``tool`` message) continues the turn before it, and its outputs are recorded as the
turn's ``tool_output``s. The header says ``source: imported`` and names its
``provenance`` (where the capture came from, and the SHA-256 of its bytes), so the UI
labels it apart from synthetic and recorded files. Events keep their order; captures
carry no per-event times, so they are spaced ``--step`` seconds apart.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .recording import FORMAT, VERSION, _now_iso, _scrub
from .sse import Api, RawEvent, SSEDecoder


class CaptureError(ValueError):
    """The capture cannot be imported; the message says why, in one line."""


@dataclass
class Exchange:
    """One HTTP request and its response, as a capture holds them."""

    method: str = "POST"
    url: str = ""
    request: Any = None
    """The request body, parsed as JSON when it is JSON."""
    status: int = 200
    content_type: str = ""
    body: bytes = b""

    @property
    def streaming(self) -> bool:
        return self.status == 200 and (
            "event-stream" in self.content_type or self.body.lstrip().startswith((b"data:", b"event:"))
        )

    def events(self) -> list[RawEvent]:
        decoder = SSEDecoder()
        return [*decoder.feed(self.body), *decoder.flush()]


@dataclass
class Provenance:
    repository: str | None = None
    path: str | None = None
    commit: str | None = None
    url: str | None = None
    sha256: str = ""
    format: str = ""
    exchanges: list[int] = field(default_factory=list)

    def header(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if v not in (None, [], "")}
        return out


# -- reading captures ---------------------------------------------------------------


def _json_or_none(text: Any) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return text if isinstance(text, (dict, list)) else None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, list):  # a session record's SSE body: a list of lines
        return "".join(str(v) for v in value).encode("utf-8")
    if isinstance(value, (dict, int, float)) or value is None:
        return b"" if value is None else json.dumps(value).encode("utf-8")
    return str(value).encode("utf-8")


def _header(headers: Any, name: str) -> str:
    """A header's value from any capture's header shape (dict of str or of lists, HAR list)."""
    if isinstance(headers, dict):
        for key, value in headers.items():
            if key.lower() == name:
                return str(value[0] if isinstance(value, list) and value else value)
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, dict) and str(item.get("name", "")).lower() == name:
                return str(item.get("value", ""))
    return ""


def read_capture(data: bytes) -> tuple[str, list[Exchange]]:
    """The capture's format and its exchanges, in order."""
    text = data.decode("utf-8", "replace")
    head = text.lstrip()[:2000]
    if head.startswith(("data:", "event:", ":")):
        return "sse", [Exchange(content_type="text/event-stream", body=data)]
    if head.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CaptureError(f"not valid JSON: {exc}") from None
        if isinstance(doc, dict) and isinstance(doc.get("log"), dict):
            return "har", [_har_entry(e) for e in doc["log"].get("entries") or []]
        if isinstance(doc, dict) and isinstance(doc.get("Entries"), list):
            return "session-record", [_record_entry(e) for e in doc["Entries"]]
        raise CaptureError("a JSON file that is neither a HAR file (log.entries) nor a session record (Entries)")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CaptureError(f"neither SSE, JSON nor YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(doc, dict) and isinstance(doc.get("interactions"), list):
        return "cassette", [_cassette_entry(i) for i in doc["interactions"]]
    raise CaptureError("not a capture this importer knows (raw SSE, cassette, HAR or session record)")


def _har_entry(entry: dict[str, Any]) -> Exchange:
    request, response = entry.get("request") or {}, entry.get("response") or {}
    content = response.get("content") or {}
    body: Any = content.get("text") or ""
    if content.get("encoding") == "base64":
        body = base64.b64decode(body)
    return Exchange(
        method=request.get("method", "POST"),
        url=request.get("url", ""),
        request=_json_or_none((request.get("postData") or {}).get("text")),
        status=int(response.get("status") or 0),
        content_type=content.get("mimeType") or _header(response.get("headers"), "content-type"),
        body=_as_bytes(body),
    )


def _record_entry(entry: dict[str, Any]) -> Exchange:
    return Exchange(
        method=entry.get("RequestMethod", "POST"),
        url=entry.get("RequestUri", ""),
        request=_json_or_none(entry.get("RequestBody")),
        status=int(entry.get("StatusCode") or 0),
        content_type=_header(entry.get("ResponseHeaders"), "content-type"),
        body=_as_bytes(entry.get("ResponseBody")),
    )


def _cassette_entry(interaction: dict[str, Any]) -> Exchange:
    request, response = interaction.get("request") or {}, interaction.get("response") or {}
    body = response.get("body")
    if isinstance(body, dict):
        body = body.get("string", "")
    status = response.get("status") or {}
    return Exchange(
        method=request.get("method", "POST"),
        url=request.get("uri", ""),
        request=_json_or_none(request.get("body")),
        status=int((status.get("code") if isinstance(status, dict) else status) or 0),
        content_type=_header(response.get("headers"), "content-type"),
        body=_as_bytes(body),
    )


def detect_api(exchange: Exchange, events: list[RawEvent]) -> Api:
    url = exchange.url.split("?")[0]
    if url.endswith("/responses"):
        return "responses"
    if url.endswith("/chat/completions"):
        return "chat"
    if "/threads" in url and ("/runs" in url or url.endswith("/submit_tool_outputs")):
        return "assistants"
    for raw in events:
        data = raw.data if isinstance(raw.data, dict) else {}
        name = raw.event or str(data.get("type") or data.get("object") or "")
        if name.startswith("response."):
            return "responses"
        if name.startswith("thread."):
            return "assistants"
        if name == "chat.completion.chunk":
            return "chat"
    raise CaptureError("cannot tell which API this stream speaks (give --api)")


# -- building the recording ---------------------------------------------------------


def _user_message(api: Api, request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    if api == "responses":
        items = request.get("input")
        if isinstance(items, str):
            return items
        users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]
        return _content_text(users[-1].get("content")) if users else None
    if api == "chat":
        users = [m for m in request.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
        return _content_text(users[-1].get("content")) if users else None
    messages = (request.get("thread") or {}).get("messages") or request.get("additional_messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _content_text(users[-1].get("content")) if users else None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict):
            text = part.get("text")
            parts.append(text.get("value", "") if isinstance(text, dict) else str(text or ""))
    return "".join(parts)


def _tool_outputs(api: Api, exchange: Exchange) -> list[tuple[str, str]] | None:
    """The tool outputs a request sends back, or None when it starts a new turn."""
    request = exchange.request if isinstance(exchange.request, dict) else {}
    if api == "assistants" and exchange.url.split("?")[0].endswith("/submit_tool_outputs"):
        return [(o.get("tool_call_id", ""), str(o.get("output", ""))) for o in request.get("tool_outputs") or []]
    if api == "responses":
        items = request.get("input")
        if (
            isinstance(items, list)
            and items
            and all(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
        ):
            return [(i.get("call_id", ""), str(i.get("output", ""))) for i in items]
    if api == "chat":
        messages = request.get("messages") or []
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
            tail = []
            for m in reversed(messages):
                if not isinstance(m, dict) or m.get("role") != "tool":
                    break
                tail.append((m.get("tool_call_id", ""), _content_text(m.get("content"))))
            return list(reversed(tail))
    return None


def _model(api: Api, request: Any, events: list[RawEvent]) -> str:
    if isinstance(request, dict) and isinstance(request.get("model"), str):
        return request["model"]
    for raw in events:
        data = raw.data if isinstance(raw.data, dict) else {}
        model = data.get("model") or (data.get("response") or {}).get("model")
        if isinstance(model, str):
            return model
    return "unknown"


def _end_status(api: Api, events: list[RawEvent]) -> str:
    """How the imported stream ended, read the way the app's adapter reads it."""
    from .backends import assistants, chat, responses

    adapter = {"responses": responses.ResponsesAdapter, "assistants": assistants.AssistantsAdapter, "chat": chat.ChatAdapter}[
        api
    ]()
    for raw in events:
        adapter.handle(raw)
    return adapter.status or "interrupted"


def build_recording(
    data: bytes,
    provenance: Provenance,
    *,
    api: Api | None = None,
    user: str | None = None,
    title: str | None = None,
    step: float = 0.02,
    only: list[int] | None = None,
) -> list[dict[str, Any]]:
    """The recording's objects (header first) for a capture's streaming exchanges."""
    fmt, exchanges = read_capture(data)
    provenance.format = fmt
    provenance.sha256 = hashlib.sha256(data).hexdigest()
    chosen = [(n, x) for n, x in enumerate(exchanges) if x.streaming and (only is None or n in only)]
    if not chosen:
        raise CaptureError(f"the {fmt} capture holds no streaming response" + (" among the chosen exchanges" if only else ""))
    provenance.exchanges = [n for n, _ in chosen]
    first_events = chosen[0][1].events()
    the_api: Api = api or detect_api(chosen[0][1], first_events)
    head: dict[str, Any] = {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "api": the_api,
        "model": _model(the_api, chosen[0][1].request, first_events),
        "config_sha256": None,
        "created": _now_iso(),
        "app_version": "imported",
        "source": "imported",
        "provenance": provenance.header(),
        "title": title or f"Imported: {provenance.path or provenance.url or 'capture'}",
    }
    out: list[dict[str, Any]] = [head]
    turn, stream, t = -1, 0, 0.0
    last_events: list[RawEvent] = []
    for n, exchange in chosen:
        events = exchange.events()
        outputs = _tool_outputs(the_api, exchange) if turn >= 0 else None
        if outputs is None:
            if turn >= 0:
                out.append({"kind": "end", "turn": turn, "t": round(t, 4), "status": _end_status(the_api, last_events)})
            turn, stream, t = turn + 1, 0, 0.0
            message = _user_message(the_api, exchange.request) or user or f"Imported exchange {n}"
            out.append({"kind": "turn", "turn": turn, "user": message})
        else:
            stream += 1
            for call_id, output in outputs:
                t += step
                out.append({"kind": "tool_output", "turn": turn, "t": round(t, 4), "call_id": call_id, "output": output})
        for raw in events:
            t += step
            line: dict[str, Any] = {"kind": "event", "turn": turn, "stream": stream, "t": round(t, 4)}
            if raw.event is not None:
                line["event"] = raw.event
            line["data"] = _scrub(raw.data, None)  # signed URLs and key-shaped strings, as the recorder does
            out.append(line)
        last_events = events
    out.append({"kind": "end", "turn": turn, "t": round(t + step, 4), "status": _end_status(the_api, last_events)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamchat.importer", description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", type=Path, help="raw SSE, vcrpy/pytest-recording cassette, HAR, or session record")
    parser.add_argument("out", type=Path, help="the recording to write (.jsonl; never overwritten)")
    parser.add_argument("--repository", help="where the capture comes from: owner/name")
    parser.add_argument("--path", help="the capture's path in that repository")
    parser.add_argument("--commit", help="the commit it was taken at")
    parser.add_argument("--url", help="or: the URL it was taken from")
    parser.add_argument("--api", choices=["responses", "assistants", "chat"], help="the API (default: detected)")
    parser.add_argument("--user", help="the user message, when the capture does not hold the request")
    parser.add_argument("--title", help="the recording's title")
    parser.add_argument("--exchange", type=int, action="append", help="import only exchange N (0-based; repeatable)")
    parser.add_argument("--step", type=float, default=0.02, help="seconds between events (captures hold no times)")
    args = parser.parse_args(argv)
    if not (args.url or args.repository):
        parser.error("say where the capture comes from: --repository/--path/--commit or --url")
    try:
        data = args.capture.read_bytes()
        provenance = Provenance(repository=args.repository, path=args.path, commit=args.commit, url=args.url)
        objs = build_recording(
            data, provenance, api=args.api, user=args.user, title=args.title, step=args.step, only=args.exchange
        )
        text = "".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in objs)
        with args.out.open("x", encoding="utf-8") as f:
            f.write(text)
    except (OSError, CaptureError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    turns = sum(1 for o in objs if o["kind"] == "turn")
    print(f"{args.out}: {turns} turn(s), api {objs[0]['api']}, from a {provenance.format} capture")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
