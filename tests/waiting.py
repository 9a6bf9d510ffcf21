"""Polling for a condition in tests that watch other threads or processes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], timeout_s: float = 10.0, step_s: float = 0.02
) -> bool:
    """True as soon as ``condition()`` is truthy, False if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return bool(condition())
