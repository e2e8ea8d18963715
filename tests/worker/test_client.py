"""The worker's message framing, on real socket pairs."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from pipeline.worker.client import receive, send


def test_a_message_sent_whole_with_descriptors_is_not_followed_by_an_empty_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that declines answers and closes as soon as it has read the request. When that happens between the
    client's first send (the descriptors and, usually, every byte) and its next call, an empty ``sendall`` on the
    closed connection fails with EPIPE and the client ran the stage saying it could not talk to the worker (seen
    once in CI). The race is forced here by closing the reader inside the first send: the timing cannot be
    produced on demand for real."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read, write = os.pipe()
    real = socket.send_fds
    got: list[tuple[dict | None, list[int]]] = []

    def send_then_peer_answers_and_closes(sock: socket.socket, buffers: list[bytes], fds: list[int]) -> int:
        sent = real(sock, buffers, fds)
        got.append(receive(theirs, with_fds=True))
        theirs.close()
        return sent

    monkeypatch.setattr(socket, "send_fds", send_then_peer_answers_and_closes)
    try:
        send(ours, {"op": "run", "env": {"A": "x" * 5000}}, [read])
        (message, fds), = got
        assert message == {"op": "run", "env": {"A": "x" * 5000}} and len(fds) == 1
        for fd in fds:
            os.close(fd)
    finally:
        ours.close()
        os.close(read)
        os.close(write)


def test_a_message_larger_than_one_read_arrives_whole() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    message = {"env": {f"K{i}": "v" * 100 for i in range(2000)}}  # ~220 kB: several reads, beyond one send's buffer
    writer = threading.Thread(target=send, args=(ours, message))  # blocks until the reader drains it
    writer.start()
    try:
        assert receive(theirs) == (message, [])
    finally:
        writer.join(timeout=30)
        ours.close()
        theirs.close()
