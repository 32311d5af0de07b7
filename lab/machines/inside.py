"""Open sockets inside the lab's network namespace from this process.

A network namespace is a per-thread attribute, and a socket stays in the
namespace it was created in. So a thread can step in, connect, and step back
out: the SSH executor and the tests' PostgreSQL clients use this to talk to
the machines without any route from the host's own network.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def inside(netns: Path) -> Iterator[None]:
    """Run the body with this thread in ``netns``; always step back out."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def connect(netns: Path, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection made inside ``netns`` (usable from any thread afterwards)."""
    with inside(netns):
        return socket.create_connection((host, port), timeout=timeout)
