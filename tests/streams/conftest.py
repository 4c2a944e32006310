"""Fixtures of the worker-side tests: the headless Chromium the page tests drive."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import in_ci


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (scripts/setup.sh installs it): skipped locally when missing, a
    failure under CI."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    message = "chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh)"
    if in_ci():
        pytest.fail(f"{message}; under CI a missing chromium fails the run", pytrace=False)
    pytest.skip(message)
