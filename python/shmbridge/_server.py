"""The Python half of shmbridge's worker: a process that Rust starts, whose
registered functions the Rust side calls (the spec's "queue process").

>>> server = Server()
>>> @server.register
... def process_buffer(shm_name: str, size: int) -> dict:
...     ...
>>> server.serve()   # doctest: +SKIP

The protocol (JSON lines on the process's original stdin and stdout) is specified
in docs/FORMAT.md. ``serve()`` moves it out of user code's way first: afterwards
file descriptor 1 and ``sys.stdout`` write to stderr, and standard input reads as
empty, so nothing a handler or a C library prints can corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import IO, Any, TypeVar, overload

PROTOCOL = 1
MARKER = "__shmbridge__"

F = TypeVar("F", bound=Callable[..., Any])


class Server:
    """Answers calls from a Rust ``shmbridge::Worker`` with registered functions.

    Handlers receive the call's arguments as keyword arguments decoded from JSON
    (shared-memory segments and arrays passed from Rust arrive opened) and may
    return any JSON value. An exception in a handler goes back to the caller with
    its type, message and traceback, and the server keeps serving.
    """

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    @overload
    def register(self, fn: F, /) -> F: ...
    @overload
    def register(self, name: str | None = None, /) -> Callable[[F], F]: ...
    def register(self, fn_or_name: Any = None, /) -> Any:
        """Register a function, as ``@server.register`` (under its own name) or
        ``@server.register("other_name")``."""
        if callable(fn_or_name):
            self._functions[fn_or_name.__name__] = fn_or_name
            return fn_or_name
        if fn_or_name is not None and not isinstance(fn_or_name, str):
            raise TypeError(f"register() takes a function or a name, not {fn_or_name!r}")

        def decorate(fn: F) -> F:
            self._functions[fn_or_name or fn.__name__] = fn
            return fn

        return decorate

    @property
    def functions(self) -> list[str]:
        """The registered names."""
        return sorted(self._functions)

    def serve(self) -> None:
        """Answer calls until the parent closes the channel (it asked to stop, or
        it went away), then return."""
        requests, replies = _take_protocol_channel()
        handshake = {"ready": True, "protocol": PROTOCOL, "pid": os.getpid(), "functions": self.functions}
        channels = os.environ.get("SHMBRIDGE_WORKER_CHANNELS")
        if channels:  # the shared-memory transport: after the handshake, two channels
            # Opened before the handshake: once it has it, the parent may close them.
            requests_name, answers_name = channels.split(",")
            pipe_replies = replies
            requests, replies = _channel_transport(requests_name, answers_name, requests, replies)
            _send(pipe_replies, handshake)
        else:
            _send(replies, handshake)
        for line in requests:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or "id" not in request:
                    raise ValueError("a request is a JSON object with an id")
            except ValueError as e:
                _send(replies, {"id": None, "error": _error("ProtocolError", f"bad request {line[:200]!r}: {e}")})
                continue
            if request.get("method") == "__shutdown__":
                _send(replies, {"id": request["id"], "result": None})
                break
            _send(replies, self._answer(request))

    def _answer(self, request: dict[str, Any]) -> bytes | dict[str, Any]:
        call_id = request["id"]
        method = request.get("method")
        fn = self._functions.get(method) if isinstance(method, str) else None
        if fn is None:
            message = f"no function {method!r} is registered; registered: {', '.join(self.functions) or 'none'}"
            return {"id": call_id, "error": _error("LookupError", message)}
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return {"id": call_id, "error": _error("TypeError", "params must be a JSON object of keyword arguments")}
        with ExitStack() as opened:
            try:
                kwargs = {key: _decode(value, opened) for key, value in params.items()}
                result = fn(**kwargs)
            except Exception as e:  # the caller gets it; the server goes on
                return {"id": call_id, "error": _error(type(e).__qualname__, str(e), traceback.format_exc())}
        try:
            return _encode({"id": call_id, "result": result})
        except (TypeError, ValueError) as e:
            return {"id": call_id, "error": _error("TypeError", f"{method} returned a value that is not JSON: {e}")}


def _error(kind: str, message: str, tb: str = "") -> dict[str, str]:
    return {"type": kind, "message": message, "traceback": tb}


def _decode(value: Any, opened: ExitStack) -> Any:
    """Replaces references to shared memory sent by Rust with opened objects."""
    if isinstance(value, dict) and MARKER in value:
        from shmbridge import SharedMemory, open_array

        kind = value[MARKER]
        if kind == "segment":
            return opened.enter_context(SharedMemory(value["name"], readonly=value.get("readonly", False)))
        if kind == "array":
            return open_array(value["name"], readonly=value.get("readonly", False))
        if kind == "fd":
            return opened.enter_context(SharedMemory.from_fd(value["fd"], readonly=value.get("readonly", False)))
        raise ValueError(f"unknown shared-memory reference {kind!r}")
    if isinstance(value, dict):
        return {k: _decode(v, opened) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, opened) for v in value]
    return value


def _take_protocol_channel() -> tuple[Iterator[bytes], IO[bytes]]:
    """The original stdin/stdout become the protocol channel; user code gets
    stderr for fd 1 and sys.stdout, and an empty stdin."""
    sys.stdout.flush()
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return iter(requests.readline, b""), replies


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode() + b"\n"


# In a channel of the shared-memory transport, in place of a message too long for
# it: the next line on the pipe is that message (JSON never starts with NUL).
SPILLED = b"\0spilled"


class _ChannelReplies:
    """The answer channel, as the file-like sink `_send` writes to; an answer too
    long for it goes down the pipe, announced in the channel."""

    def __init__(self, channel: Any, pipe: IO[bytes]) -> None:
        self._channel = channel
        self._pipe = pipe
        self._max = channel.max_message

    def write(self, data: bytes) -> None:
        if len(data) <= self._max:
            self._channel.send(data)
        else:
            self._channel.send(SPILLED)
            self._pipe.write(data)
            self._pipe.flush()

    def flush(self) -> None:
        pass


def _channel_transport(
    requests_name: str, answers_name: str, pipe_requests: Iterator[bytes], pipe_replies: IO[bytes]
) -> tuple[Iterator[bytes], Any]:
    from shmbridge import Channel

    requests, answers = Channel.open(requests_name), Channel.open(answers_name)

    def incoming() -> Iterator[bytes]:
        while True:
            try:
                request = requests.recv()
            except (EOFError, BrokenPipeError):  # the parent closed, or died
                return
            if request == SPILLED:  # too long for the channel: it is on the pipe
                request = next(pipe_requests, b"")
                if not request:
                    return
            yield request

    return incoming(), _ChannelReplies(answers, pipe_replies)


def _send(replies: Any, message: bytes | dict[str, Any]) -> None:
    """Writes one reply line (encoding it unless the caller already did)."""
    replies.write(message if isinstance(message, bytes) else _encode(message))
    replies.flush()
