"""Helpers to run `bmi serve` / `bmi rig` as real processes and feed them real streams."""

import socket
import subprocess
import sys
import time

import numpy as np

from exports.runtime.protocol import encode_data, encode_hello


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bmi(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def send_data(sock, data: np.ndarray, sfreq, chunk_sizes, pace: float = 0.0, start: int = 0) -> int:
    """Data frames only (after a hello); timestamps on the sender's clock (seconds of stream from 0)."""
    pos, i = 0, 0
    while pos < data.shape[1]:
        n = int(chunk_sizes[i % len(chunk_sizes)])
        sock.sendall(encode_data(data[:, pos : pos + n], (start + pos + n) / sfreq))
        pos, i = pos + n, i + 1
        if pace:
            time.sleep(pace)
    return start + pos


def send_recording(sock, data: np.ndarray, ch_names, sfreq, chunk_sizes, token=None, pace: float = 0.0,
                   units=None) -> None:
    """A hello, then the recording as data frames (``pace`` seconds between frames)."""
    sock.sendall(encode_hello(list(ch_names), sfreq, token, units))
    send_data(sock, data, sfreq, chunk_sizes, pace)


def wait(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err
