"""Automatic checks for the lab exercises: pass / fail with a helpful diff, never a crash.

A lab exercise gives the learner a function to write and then calls a check::

    def softmax(x):
        raise NotImplementedError          # the learner's stub

    checks.check_function(softmax, [((torch.tensor([1., 2.]),), {}, torch.tensor([.269, .731]))],
                          name="softmax", atol=1e-3)

The check prints one line (✅ passed, ❌ what differed and by how much, or ⏳ not implemented
yet) and records it.  :func:`summary` at the end of a lab lists all of them; with
``GENAI_LAB_STRICT_CHECKS=1`` (how the test suite runs the solutions) it raises when any check
did not pass.  Chapter-specific checks live in ``genai_lab/checks/<topic>.py``.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

PASSED, FAILED, TODO = "passed", "failed", "not implemented yet"
_ICON = {PASSED: "✅", FAILED: "❌", TODO: "⏳"}


@dataclass
class CheckResult:
    name: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __str__(self) -> str:
        text = f"{_ICON[self.status]} {self.name}: {self.status}"
        return text + (f" — {self.message}" if self.message else "")

    def _repr_html_(self) -> str:  # a coloured line in notebooks
        colour = {PASSED: "#1a7f37", FAILED: "#cf222e", TODO: "#9a6700"}[self.status]
        from html import escape

        return f'<pre style="color:{colour};white-space:pre-wrap">{escape(str(self))}</pre>'

    def __repr__(self) -> str:
        return str(self)


RESULTS: list[CheckResult] = []


def _record(result: CheckResult, verbose: bool = True) -> CheckResult:
    RESULTS[:] = [r for r in RESULTS if r.name != result.name]
    RESULTS.append(result)
    if verbose:
        print(result)
    return result


def strict() -> bool:
    """True when checks that do not pass must raise (``GENAI_LAB_STRICT_CHECKS=1``)."""
    return os.environ.get("GENAI_LAB_STRICT_CHECKS", "").strip().lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------- comparing
def describe_difference(actual: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-5,
                        path: str = "result") -> str | None:
    """``None`` when ``actual`` matches ``expected``; otherwise one sentence saying what differed.

    Tensors and arrays are compared by shape, then values (``atol + rtol·|expected|``), and the
    worst element is named; numbers by tolerance; sequences and dicts element by element;
    anything else by ``==``.
    """
    import numpy as np

    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    is_tensor = lambda v: (torch is not None and isinstance(v, torch.Tensor)) or isinstance(v, np.ndarray)  # noqa: E731
    if is_tensor(expected):
        if not is_tensor(actual):
            return f"{path} should be a tensor/array of shape {tuple(expected.shape)}, got {type(actual).__name__}"
        a = actual.detach().cpu().double().numpy() if torch is not None and isinstance(actual, torch.Tensor) else np.asarray(actual, dtype=float)
        e = expected.detach().cpu().double().numpy() if torch is not None and isinstance(expected, torch.Tensor) else np.asarray(expected, dtype=float)
        if a.shape != e.shape:
            return f"{path} has shape {a.shape}, expected {e.shape}"
        if a.size == 0:
            return None
        if np.isnan(a).any() and not np.isnan(e).any():
            return f"{path} contains NaN at {tuple(int(i) for i in np.argwhere(np.isnan(a))[0])}"
        diff = np.abs(a - e)
        tol = atol + rtol * np.abs(e)
        bad = diff > tol
        if bad.any():
            idx = np.unravel_index(np.argmax(diff - tol), diff.shape)
            return (f"{path} differs at {bad.sum()} of {diff.size} positions; worst at index "
                    f"{tuple(int(i) for i in idx)}: got {a[idx]:.6g}, expected {e[idx]:.6g} "
                    f"(max |diff| {diff.max():.3g}, tolerance {atol:g})")
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if actual == expected else f"{path} is {actual!r}, expected {expected!r}"
    if isinstance(expected, (int, float)):
        if not isinstance(actual, (int, float)) and not (is_tensor(actual) and getattr(actual, "ndim", 1) == 0):
            return f"{path} should be a number, got {type(actual).__name__}"
        a = float(actual)
        if math.isnan(a) or abs(a - expected) > atol + rtol * abs(expected):
            return f"{path} is {a:.6g}, expected {expected:.6g} (|diff| {abs(a - expected):.3g})"
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path} should be a dict, got {type(actual).__name__}"
        missing = set(expected) - set(actual)
        extra = set(actual) - set(expected)
        if missing or extra:
            return f"{path} keys differ: missing {sorted(map(str, missing))}, unexpected {sorted(map(str, extra))}"
        for k in expected:
            msg = describe_difference(actual[k], expected[k], atol=atol, rtol=rtol, path=f"{path}[{k!r}]")
            if msg:
                return msg
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"{path} should be a {type(expected).__name__}, got {type(actual).__name__}"
        if len(actual) != len(expected):
            return f"{path} has length {len(actual)}, expected {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            msg = describe_difference(a, e, atol=atol, rtol=rtol, path=f"{path}[{i}]")
            if msg:
                return msg
        return None
    return None if actual == expected else f"{path} is {actual!r}, expected {expected!r}"


# --------------------------------------------------------------------------- checks
def run_check(name: str, body: Callable[[], str | None], *, verbose: bool = True) -> CheckResult:
    """Run ``body()`` (returns ``None`` when all is well, or a message) and record the result.

    ``NotImplementedError`` anywhere inside means "not implemented yet"; any other exception is
    reported as a failure with its last traceback line, never re-raised.
    """
    if not name or not isinstance(name, str):
        raise ValueError("name must be a non-empty str")
    try:
        message = body()
    except NotImplementedError:
        return _record(CheckResult(name, TODO, "write the function, then run this cell again"), verbose)
    except Exception as exc:  # the learner's code raised: show it, do not crash the notebook
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return _record(CheckResult(name, FAILED, f"raised {type(exc).__name__}: {exc} "
                                                 f"(line {where.lineno} of {where.name})"), verbose)
    if message:
        return _record(CheckResult(name, FAILED, message), verbose)
    return _record(CheckResult(name, PASSED), verbose)


def check_function(fn: Callable, cases: Sequence[tuple], *, name: str | None = None,
                   atol: float = 1e-5, rtol: float = 1e-5, verbose: bool = True) -> CheckResult:
    """Call ``fn(*args, **kwargs)`` for each ``(args, kwargs, expected)`` case and compare.

    ``expected`` may also be a callable ``expected(actual) -> message or None`` for properties
    that have no single right answer (e.g. "rows sum to 1").
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not cases:
        raise ValueError("cases must not be empty")
    label = name or getattr(fn, "__name__", "function")

    def body():
        for i, case in enumerate(cases, 1):
            if len(case) != 3:
                raise ValueError("each case must be (args, kwargs, expected)")
            args, kwargs, expected = case
            actual = fn(*args, **kwargs)
            if callable(expected) and not hasattr(expected, "shape"):
                msg = expected(actual)
            else:
                msg = describe_difference(actual, expected, atol=atol, rtol=rtol)
            if msg:
                shown = ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()])
                return f"case {i} of {len(cases)} ({shown}): {msg}"
        return None

    return run_check(label, body, verbose=verbose)


def _short(value: Any) -> str:
    if hasattr(value, "shape"):
        return f"<{type(value).__name__} {tuple(value.shape)}>"
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "…"


def check_close(actual: Any, expected: Any, *, name: str, atol: float = 1e-5,
                rtol: float = 1e-5, verbose: bool = True) -> CheckResult:
    """Compare a value the learner computed with the expected one."""
    return run_check(name, lambda: describe_difference(actual, expected, atol=atol, rtol=rtol),
                     verbose=verbose)


def check_true(condition_fn: Callable[[], bool], *, name: str, message: str,
               verbose: bool = True) -> CheckResult:
    """Pass when ``condition_fn()`` is truthy; otherwise fail with ``message``."""
    return run_check(name, lambda: None if condition_fn() else message, verbose=verbose)


def summary(*, reset: bool = True) -> list[CheckResult]:
    """Print every check of this lab; under ``GENAI_LAB_STRICT_CHECKS=1`` raise if any did not pass."""
    results = list(RESULTS)
    counts = {s: sum(r.status == s for r in results) for s in (PASSED, FAILED, TODO)}
    print(f"Lab summary: {counts[PASSED]} passed, {counts[FAILED]} failed, "
          f"{counts[TODO]} not implemented yet")
    for r in results:
        print("  ", r)
    if reset:
        RESULTS.clear()
    if strict() and (counts[FAILED] or counts[TODO] or not results):
        raise AssertionError("strict checks: every exercise must pass "
                             f"({counts[FAILED]} failed, {counts[TODO]} not implemented)")
    return results
