"""What every drill topology needs from the operating system: a free loopback port, a way to stop a
child and everything it started, and the drill's own error (exit code 3)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any

from shelfwise.core.errors import ShelfwiseError


class DrillError(ShelfwiseError):
    exit_code = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_group(proc: subprocess.Popen[Any], *, grace: float = 3.0) -> None:
    """Stop a child and everything it started (it leads its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
