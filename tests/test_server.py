"""shmbridge.Server on its own: registration, and the protocol spoken directly
(including what the Rust side never sends: malformed lines, bad params)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import readline

from shmbridge import Server


def test_register_forms() -> None:
    server = Server()

    @server.register
    def plain() -> int:
        return 1

    @server.register("renamed")
    def original() -> int:
        return 2

    @server.register()
    def empty_call() -> int:
        return 3

    assert server.functions == ["empty_call", "plain", "renamed"]
    assert plain() == 1 and original() == 2, "decorators return the function itself"
    with pytest.raises(TypeError, match="function or a name"):
        server.register(42)  # type: ignore[call-overload]


SERVER = textwrap.dedent(
    """
    import sys
    from shmbridge import Server
    server = Server()

    @server.register
    def add(a, b):
        return a + b

    @server.register
    def read_stdin():
        return sys.stdin.read()

    server.serve()
    print("serve() returned", file=sys.stderr)
    """
)


class Session:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> dict:
        assert self.proc.stdout
        return json.loads(readline(self.proc.stdout, "the server"))

    def send(self, text: str) -> dict:
        assert self.proc.stdin
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.line()


def test_protocol_spoken_directly() -> None:
    s = Session()
    try:
        hello = s.line()
        assert hello["ready"] is True and hello["protocol"] == 1
        assert hello["functions"] == ["add", "read_stdin"] and hello["pid"] == s.proc.pid
        assert s.send('{"id": 1, "method": "add", "params": {"a": 1, "b": 2}}') == {"id": 1, "result": 3}
        bad = s.send("this is not json")
        assert bad["id"] is None and bad["error"]["type"] == "ProtocolError"
        assert s.send('[1, 2]')["error"]["type"] == "ProtocolError"
        wrong = s.send('{"id": 2, "method": "add", "params": [1, 2]}')
        assert wrong["error"]["type"] == "TypeError" and "keyword" in wrong["error"]["message"]
        assert s.send('{"id": 3, "method": "read_stdin"}') == {"id": 3, "result": ""}, "stdin is empty for handlers"
        assert s.send('{"id": 4, "method": "__shutdown__"}') == {"id": 4, "result": None}
        _, err = s.proc.communicate(timeout=30)
        assert s.proc.returncode == 0 and "serve() returned" in err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_closing_stdin_ends_serve() -> None:
    s = Session()
    try:
        s.line()
        _, err = s.proc.communicate("", timeout=30)
        assert s.proc.returncode == 0 and "serve() returned" in err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
