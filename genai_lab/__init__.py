"""genai_lab: the tested code behind the genai-lab book and labs.

Every notebook starts with::

    import genai_lab as gl
    cfg = gl.setup()

Modules are imported lazily (``gl.data``, ``gl.models``, ``gl.train``…), so ``import genai_lab``
stays fast and one optional dependency cannot break the others.
"""

from __future__ import annotations

import importlib
import os

# Apple silicon: an operation the Metal (mps) backend lacks runs on the CPU instead of failing;
# torch reads this when it first loads, so it is set before anything imports torch
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .config import LabConfig, current, setup

__version__ = "0.1.0"
__all__ = ["setup", "current", "LabConfig", "__version__"]


#: functions reached as ``gl.<name>`` without importing their module up front
_LAZY_FUNCTIONS = {"claim": "claims"}


def __getattr__(name: str):
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_FUNCTIONS[name]}"), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module 'genai_lab' has no attribute {name!r}") from None
        raise
