"""The real flies clip, skipped cleanly when ../shared is absent."""

from __future__ import annotations

import pytest
from tracking_helpers import FLIES, sio


@pytest.fixture(scope="session")
def flies():
    if not FLIES.exists():
        pytest.skip("shared flies clip not available")
    return sio.load_slp(str(FLIES))
