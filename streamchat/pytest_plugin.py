"""pytest plugin: record an OpenAI-API test's streams once, replay them offline forever.

    @pytest.mark.streamchat_recording("recordings/greeting.jsonl")
    def test_greeting(streamchat_replay):
        stream = streamchat_replay.client.chat.completions.create(model="gpt-5-mini", messages=[...], stream=True)

``streamchat_replay`` gives an ``openai.OpenAI`` (``.client``), an ``openai.AsyncOpenAI``
(``.async_client``) and a ``.base_url`` for any other HTTP client, all pointed at a
server on 127.0.0.1 that either replays the test's recording (``replayapi.ReplayAPI``
fed by a ``replay.Player``: the real SSE bytes, framed as each API frames them) or
forwards to ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY`` through the recording proxy
(``proxy.Proxy``), which writes what streams back. Record modes are vcrpy's:
``--streamchat-record-mode`` / ``STREAMCHAT_RECORD_MODE`` = none (default), once,
new_episodes, all. See docs/testing-with-recordings.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from .proxy import Proxy, Receive, Recorder, Send, ServedApp, serve_app, upstream_from_env
from .recording import RecordedTurn, RecordingError, load_recording
from .replay import Files, Player, normalize, request_files, same_files, searchable_files
from .replayapi import ReplayAPI, Script, TurnRequest
from .replayapi.base import text_of
from .serve import asgi_app, read_body
from .sse import Api

MODES = ("none", "once", "new_episodes", "all")
RULE_PARTS = ("text", "position", "model")
DEFAULT_RULE = ("text",)
DUMMY_KEY = "streamchat-no-key"
"""What the fixture's clients send: the real key stays in the recording proxy."""

_MISSES = pytest.StashKey[list[str]]()


# -- matching ------------------------------------------------------------------------


def parse_rule(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    parts = [p.strip() for p in value.replace(",", " ").split()] if isinstance(value, str) else list(value)
    bad = [p for p in parts if p not in RULE_PARTS]
    if bad or not parts:
        raise pytest.UsageError(f"streamchat matching rule {value!r}: use one or more of {', '.join(RULE_PARTS)}")
    return tuple(dict.fromkeys(parts))


def _turn_meta(path: Path) -> dict[int, dict[str, Any]]:
    """The optional ``position`` and ``model`` keys of each turn object (readers that do
    not know them skip them; a file without them has one conversation, position = index)."""
    meta: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("kind") == "turn" and isinstance(obj.get("turn"), int):
            meta[obj["turn"]] = obj
    return meta


@dataclass
class RulePlayer(Player):
    """A ``Player`` whose matching rule is configurable.

    Each part of the rule must hold for a recorded turn to answer a request: ``text``
    (the normalized user message is the same), ``position`` (the turn has the same
    place in its conversation), ``model`` (the request asks for the recorded model).
    Among the turns that qualify, the one at the request's position wins, else the
    first one after it, else the last one: so with the default rule (text) a prompt
    asked twice replays its two answers in order, as ``Player`` does.
    """

    rule: tuple[str, ...] = DEFAULT_RULE
    positions: dict[int, int] = field(default_factory=dict)
    models: dict[int, str | None] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    _request: TurnRequest | None = None

    @classmethod
    def load(cls, path: Path, rule: tuple[str, ...], **kw: Any) -> RulePlayer:
        recording = load_recording(path, name=path.name)
        meta = _turn_meta(path)
        positions = {t.index: meta.get(t.index, {}).get("position", t.index) for t in recording.turns}
        models = {t.index: meta.get(t.index, {}).get("model", recording.header.get("model")) for t in recording.turns}
        return cls(recording, rule=rule, positions=positions, models=models, **kw)

    def select(
        self, api: Api, user: str, position: int, model: Any, files: Files | None = None, searchable: tuple[str, ...] = ()
    ) -> RecordedTurn | None:
        """The turn for a request; ``files`` (its files, when known) must be the turn's too
        (or, for a recorded file not in the message, among ``searchable``: see ``same_files``)."""
        if api != self.recording.api:
            return None
        key = normalize(user)
        asked = None if files is None else self.keys(files)
        candidates = [
            t
            for t in self.recording.turns
            if ("text" not in self.rule or normalize(t.user) == key)
            and (asked is None or same_files(t.attachments, asked, searchable))
            and ("position" not in self.rule or self.positions[t.index] == position)
            and ("model" not in self.rule or self.models[t.index] == model)
        ]
        if not candidates:
            return None
        for turn in candidates:
            if self.positions[turn.index] == position:
                return turn
        later = [t for t in candidates if self.positions[t.index] > position]
        return later[0] if later else candidates[-1]

    def match(
        self,
        message: str,
        position: int,
        parent: int | None = None,
        attachments: Files | None = (),
        searchable: Sequence[str] = (),
    ) -> RecordedTurn | None:
        request = self._request
        if request is None:
            return super().match(message, position, parent, attachments, searchable)
        return self.select(request.api, message, position, request.body.get("model"), attachments, tuple(searchable))

    def describe_miss(self, api: Api, user: str, position: int, model: Any, why: str = "") -> str:
        prompts = [
            f"- {t.user} ({self.recording.api}, position {self.positions[t.index]}, model {self.models[t.index]})"
            for t in self.recording.turns
        ]
        listed = "\n".join(prompts) or "(none)"
        return (
            f"streamchat: no recorded turn answers “{user.strip()[:200]}” ({api} API, position {position}, model {model}) "
            f"in {self.recording.name}, matching on {' + '.join(self.rule)}.{why}\nRecorded prompts:\n{listed}"
        )

    def __call__(self, request: TurnRequest) -> Script:
        self._request = request
        try:
            turn = self.select(
                request.api,
                request.user,
                request.position,
                request.body.get("model"),
                request_files(request),
                searchable_files(request),
            )
            if turn is None:
                message = self.describe_miss(request.api, request.user, request.position, request.body.get("model"))
                self.misses.append(message)
                return Script(status=404, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_turn"})
            return super().__call__(request)
        finally:
            self._request = None


# -- the file a test records -----------------------------------------------------------


def write_merged(recorder: Recorder, target: Path, *, keep: Path | None = None) -> int:
    """Write every conversation the recorder saw into ``target``, turn by turn in the
    order they began, each turn object carrying its ``position`` in its conversation and
    its ``model``. With ``keep`` (new_episodes), that file's lines come first and the
    new turns are numbered after its own. Returns the number of turns written."""
    lines: list[dict[str, Any]] = []
    apis = {c.api for c in recorder.conversations if c.writer is not None}
    base = 0
    head: dict[str, Any] | None = None
    if keep is not None and keep.exists():
        for line in keep.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                lines.append(obj)
                if obj.get("kind") == "header":
                    head = obj
                elif isinstance(obj.get("turn"), int):
                    base = max(base, obj["turn"] + 1)
        if head is not None:
            apis.add(head["api"])
    if len(apis) > 1:
        raise RecordingError(
            f"{target}: this test spoke several APIs ({', '.join(sorted(apis))}); a recording file holds one. Split the test."
        )
    turns: list[tuple[int, list[dict[str, Any]]]] = []
    for conversation in recorder.conversations:
        if conversation.writer is None or not conversation.writer.path.exists():
            continue
        by_turn: dict[int, list[dict[str, Any]]] = {}
        for line in conversation.writer.path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            if obj.get("kind") == "header":
                if head is None:
                    head = obj
                continue
            by_turn.setdefault(obj["turn"], []).append(obj)
        for index, objs in sorted(by_turn.items()):
            if index >= len(conversation.turns):
                continue
            info = conversation.turns[index]
            objs[0] = {**objs[0], "position": info.position, "model": info.model}
            turns.append((info.seq, objs))
    if head is None:
        return 0
    if not lines:
        lines.append(head)
    turns.sort(key=lambda pair: pair[0])
    for n, (_, objs) in enumerate(turns):
        lines.extend({**obj, "turn": base + n} for obj in objs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in lines), encoding="utf-8")
    tmp.replace(target)
    return len(turns)


# -- new_episodes: replay what is recorded, forward what is not ----------------------------


def _receive_again(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again


class EpisodesRouter:
    """new_episodes: a request a recorded turn answers is replayed, any other one goes
    to the recording proxy. A request in a server-side conversation (a Conversations
    id, a response id, a thread) goes where that conversation lives: one the replay
    started cannot continue upstream, whose server never saw it."""

    def __init__(self, core: ReplayAPI, player: RulePlayer, proxy: Proxy) -> None:
        self.core, self.player, self.proxy = core, player, proxy
        self.replay = asgi_app(core)

    def _local(self, object_id: Any) -> bool:
        return isinstance(object_id, str) and (object_id in self.core.objects or object_id in self.core.responses.stored)

    def _replayed(self, method: str, parts: list[str], body: dict[str, Any]) -> bool:
        if method == "POST" and parts in (["conversations"], ["threads"]):
            return True
        if parts[0] in ("conversations", "threads") and len(parts) > 1:
            return self._local(parts[1])
        if method == "POST" and parts == ["chat", "completions"]:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            asked = [m for m in messages if m.get("role") == "user"]
            if not asked:
                return False
            text = text_of(asked[-1].get("content"))
            return self.player.select("chat", text, len(asked) - 1, body.get("model")) is not None
        if method == "POST" and parts == ["responses"]:
            ref = body.get("conversation")
            ref = (ref.get("id") if isinstance(ref, dict) else ref) or body.get("previous_response_id")
            if ref:
                return self._local(ref)
            items = body.get("input")
            user: str | None = items if isinstance(items, str) else None
            if isinstance(items, list):
                users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
                user = text_of(users[-1].get("content")) if users else None
            return user is not None and self.player.select("responses", user, 0, body.get("model")) is not None
        return False

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.proxy(scope, receive, send)  # lifespan: the proxy closes its files
            return
        raw = await read_body(receive)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        parts = scope["path"].removeprefix("/v1").strip("/").split("/")
        if self._replayed(scope["method"], parts, body if isinstance(body, dict) else {}):
            await self.replay(scope, _receive_again(raw, receive), send)
        else:
            await self.proxy.forward(scope, raw, receive, send)


# -- the fixture ---------------------------------------------------------------------------


class StreamchatReplay:
    """Clients wired to the test's recording (see the module docstring).

    ``mode`` is what this test does: ``replay``, ``record`` or ``new_episodes``.
    The server starts on first use of ``base_url``, ``client`` or ``async_client``.
    """

    def __init__(self, path: Path, mode: str, *, rule: tuple[str, ...], speed: float) -> None:
        self.path = path
        self.mode = mode
        self.rule = rule
        self.speed = speed
        self.player: RulePlayer | None = None
        self.recorder: Recorder | None = None
        self._folder: Path | None = None
        self._served: ServedApp | None = None
        self._client: openai.OpenAI | None = None
        self._async: openai.AsyncOpenAI | None = None
        if mode in ("replay", "new_episodes"):
            self.player = RulePlayer.load(path, rule)

    @property
    def misses(self) -> list[str]:
        """One message per request that no recorded turn answered."""
        return self.player.misses if self.player is not None else []

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: any OpenAI-compatible client can use it."""
        if self._served is None:
            self._served = serve_app(self._app())
        return self._served.url

    def _app(self) -> Any:
        proxy = None
        if self.mode in ("record", "new_episodes"):
            self._folder = Path(tempfile.mkdtemp(prefix="streamchat-rec-"))
            self.recorder = Recorder(self._folder)
            proxy = Proxy(upstream_from_env(), self.recorder, api_key=os.environ.get("OPENAI_API_KEY"))
        if self.mode == "record":
            assert proxy is not None
            return proxy
        assert self.player is not None
        core = ReplayAPI(self.player, speed=self.speed)
        if self.mode == "replay":
            return asgi_app(core)
        assert proxy is not None
        return EpisodesRouter(core, self.player, proxy)

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.base_url, api_key=DUMMY_KEY)
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        if self._async is None:
            self._async = openai.AsyncOpenAI(base_url=self.base_url, api_key=DUMMY_KEY)
        return self._async

    def close(self) -> int:
        """Stop the server; in a recording mode write the file. Returns the turns written."""
        written = 0
        if self._client is not None:
            self._client.close()
        if self._served is not None:
            self._served.stop()  # lifespan shutdown: the proxy closes its writers
        try:
            if self.recorder is not None:
                self.recorder.close()
                keep = self.path if self.mode == "new_episodes" else None
                written = write_merged(self.recorder, self.path, keep=keep)
        finally:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
        return written


def _effective_mode(mode: str, path: Path) -> str:
    if mode == "all":
        return "record"
    if mode == "none":
        return "replay"
    if not path.exists():
        return "record"
    return "replay" if mode == "once" else "new_episodes"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_path(item: pytest.Item) -> Path:
    """``recordings/<test module>/<test name>.jsonl`` beside the test file."""
    name = _SAFE.sub("_", item.name).strip("_") or "test"
    return item.path.parent / "recordings" / item.path.stem / f"{name}.jsonl"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamchat", "streamchat recordings")
    group.addoption(
        "--streamchat-record-mode",
        choices=MODES,
        default=None,
        help="none (default: replay only, never the network), once (record a missing recording), "
        "new_episodes (record what no recorded turn answers), all (always record). Env: STREAMCHAT_RECORD_MODE.",
    )
    group.addoption(
        "--streamchat-speed",
        type=float,
        default=None,
        metavar="X",
        help="replay speed: 0 = as fast as possible (default), 1 = the recorded pace",
    )
    parser.addini("streamchat_match", "matching rule: text, position, model (any of them; default: text)", default="text")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "streamchat_recording(path, match=None): the test's recording (relative to the test file's folder) "
        "and optionally its matching rule (text, position, model)",
    )


def _mode(config: pytest.Config) -> str:
    mode = config.getoption("--streamchat-record-mode") or os.environ.get("STREAMCHAT_RECORD_MODE") or "none"
    if mode not in MODES:
        raise pytest.UsageError(f"STREAMCHAT_RECORD_MODE={mode!r}: use one of {', '.join(MODES)}")
    return str(mode)


@pytest.fixture
def streamchat_replay(request: pytest.FixtureRequest) -> Iterator[StreamchatReplay]:
    """Clients wired to this test's recording: ``.client``, ``.async_client``, ``.base_url``."""
    item = request.node
    marker = item.get_closest_marker("streamchat_recording")
    path = default_path(item)
    rule = parse_rule(request.config.getini("streamchat_match"))
    if marker is not None:
        if marker.args:
            path = item.path.parent / str(marker.args[0])
        if marker.kwargs.get("match"):
            rule = parse_rule(marker.kwargs["match"])
    speed = request.config.getoption("--streamchat-speed")
    speed = 0.0 if speed is None else float(speed)
    if speed < 0:
        raise pytest.UsageError("--streamchat-speed must be >= 0")
    mode = _mode(request.config)
    effective = _effective_mode(mode, path)
    if effective != "record" and not path.exists():
        pytest.fail(
            f"streamchat: no recording at {path} (record mode {mode}). Record it once against the API or a compatible "
            f"server: OPENAI_API_KEY=… [OPENAI_BASE_URL=…] pytest --streamchat-record-mode=once",
            pytrace=False,
        )
    try:
        replay = StreamchatReplay(path, effective, rule=rule, speed=speed)
    except RecordingError as exc:
        pytest.fail(f"streamchat: {exc}", pytrace=False)
    item.stash[_MISSES] = replay.misses
    try:
        yield replay
    finally:
        replay.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A request that no recorded turn answered fails the test with the message naming
    it, even when the code under test caught the client's error."""
    try:
        result = yield
    except BaseException:
        misses = item.stash.get(_MISSES, [])
        if misses:
            raise pytest.fail.Exception("\n\n".join(misses), pytrace=False) from None
        raise
    misses = item.stash.get(_MISSES, [])
    if misses:
        pytest.fail("\n\n".join(misses), pytrace=False)
    return result
