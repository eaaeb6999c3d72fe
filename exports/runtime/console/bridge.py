"""The server's end of the console: spawn the console process and exchange datagrams with it, never blocking."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

from ..inputs import check_bind_address
from .secret import child_environment, console_secret, console_url


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"'--console' ({listen!r}) must be HOST:PORT, e.g. 127.0.0.1:8080.")
    return host.strip("[]"), int(port)


class ConsoleBridge:
    """A console child process fed by non-blocking datagrams: a message the console cannot take at once is
    dropped and counted, never waited for; its controls are read without waiting."""

    def __init__(self, listen: str, *, allow_remote: bool, runs_dir: str | None, hello: dict[str, Any],
                 cue_outlet: str = "bmi-cues", token_file: str | None = None):
        host, port = parse_listen(listen)
        secret, drawn = console_secret(token_file)
        check_bind_address(host, allow_remote, secret, "The console")
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.setblocking(False)
        args = [sys.executable, "-m", "exports.runtime.console", "--fd", str(child.fileno()), "--listen", listen,
                "--cue-outlet", cue_outlet]
        if allow_remote:
            args += ["--allow-remote"]
        if runs_dir:
            args += ["--runs", str(runs_dir)]
        # the secret goes in the child's environment (readable by this user only), never in its arguments
        self.proc = subprocess.Popen(args, pass_fds=[child.fileno()], stdout=subprocess.DEVNULL,
                                     env=child_environment(secret))
        child.close()
        self.url = console_url(host, port, secret, drawn)
        self.dropped = 0
        self.send({"kind": "hello", **hello})

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(json.dumps(msg, separators=(",", ":")).encode())
        except OSError:  # full (a slow console) or gone (a crashed one): decoding goes on
            self.dropped += 1

    def controls(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if isinstance(msg, dict):
                out.append(msg)

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll()

    def close(self) -> None:
        self.send({"kind": "bye"})
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.sock.close()
