"""Whether the tests run in CI, where a missing service is a failure, not a skip.

A module of its own because ``from conftest import ...`` picks whichever of the
several conftest.py files pytest imported first.
"""

from __future__ import annotations

import os


def running_in_ci() -> bool:
    return os.environ.get("CI") == "true"
