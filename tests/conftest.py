"""Test defaults: smoke profile, offline, a few threads; a `cfg` fixture for chapter tests."""

import os

os.environ.setdefault("GENAI_LAB_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GENAI_LAB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def cfg():
    import genai_lab as gl

    return gl.setup("smoke", verbose=False)
