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


def pytest_configure(config):
    """Tests that never call gl.setup() still respect GENAI_LAB_THREADS (parallel workers)."""
    threads = os.environ.get("GENAI_LAB_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
