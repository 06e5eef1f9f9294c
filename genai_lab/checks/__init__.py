"""Automatic checks for the lab exercises: pass / fail with a helpful diff, never a crash.

A lab exercise gives the learner a function to write and then calls a check::

    def softmax(x):
        raise NotImplementedError          # the learner's stub

    checks.check_function(softmax, [((torch.tensor([1., 2.]),), {}, torch.tensor([.269, .731]))],
                          name="softmax", atol=1e-3)

The check prints one line (✅ passed, ❌ what differed and by how much, or ⏳ not implemented
yet) and records it.  :func:`summary` at the end of a lab lists all of them; with
``GENAI_LAB_STRICT_CHECKS=1`` (how the test suite runs the solved labs) it raises when any check
did not pass.  Chapter-specific checks live in ``genai_lab/checks/<topic>.py``; each of those
modules also names its lab's exercises as :class:`Exercise` objects, so a learner can ask for help::

    from genai_lab.checks import rnn as lab
    lab.lstm_step.check(lstm_step)    # the same check as lab.check_lstm_step(lstm_step)
    lab.lstm_step.hint()              # a nudge in the right direction
    lab.lstm_step.solution()          # the reference solution (genai_lab/solutions/rnn.py)

When a wrong answer matches a classic mistake (e.g. attention without the 1/√d_k scaling), the
check says so: see :func:`name_mistake`.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass, field
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


# --------------------------------------------------------------------------- common mistakes
def name_mistake(actual: Any, mistakes: dict[str, Callable[[], Any]], *, atol: float = 1e-5,
                 rtol: float = 1e-5) -> str:
    """Name the classic mistake whose result ``actual`` matches, or ``""`` when none does.

    ``mistakes`` maps a description (``"the softmax is over the queries (dim=-2), not the keys"``)
    to a function computing what that mistake returns on the same inputs.  Returns
    ``" — looks like: <description>"`` for the first match, ready to append to a failure message.
    A mistake whose computation raises is skipped.
    """
    if not isinstance(mistakes, dict):
        raise TypeError(f"mistakes must be a dict of description -> callable, got {type(mistakes).__name__}")
    for description, wrong in mistakes.items():
        try:
            wrong_value = wrong()
        except Exception:  # noqa: BLE001 - a mistake that cannot be computed here cannot match
            continue
        if describe_difference(actual, wrong_value, atol=atol, rtol=rtol) is None:
            return f" — looks like: {description}"
    return ""


def expect(expected: Any, mistakes: dict[str, Callable[[], Any]] | None = None, *, atol: float = 1e-5,
           rtol: float = 1e-5, path: str = "result") -> Callable[[Any], str | None]:
    """A comparison for :func:`check_function` cases that names a classic mistake when it sees one.

    Returns ``compare(actual) -> None | message``: the difference from ``expected`` (as
    :func:`describe_difference` says it), followed by :func:`name_mistake` of ``mistakes``.
    """
    def compare(actual: Any) -> str | None:
        msg = describe_difference(actual, expected, atol=atol, rtol=rtol, path=path)
        if msg and mistakes:
            msg += name_mistake(actual, mistakes, atol=atol, rtol=rtol)
        return msg

    return compare


# --------------------------------------------------------------------------- exercises
@dataclass(frozen=True)
class Exercise:
    """One lab exercise: its check, a hint, and the reference solution, on demand.

    ``topic`` names the lab (``genai_lab/solutions/<topic>.py`` holds the answers),
    ``solution_names`` the functions/classes the learner writes in this exercise, ``check_fn`` the
    check, ``hint_text`` a nudge that guides without giving the code away, and ``check_names`` the
    lab's functions the check takes, in order (default: ``solution_names``; an exercise may also
    check an earlier one's function, e.g. the masks run through the learner's attention).
    """

    topic: str
    name: str
    check_fn: Callable[..., CheckResult] = field(repr=False)
    solution_names: tuple[str, ...]
    hint_text: str = field(repr=False)
    check_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.solution_names:
            raise ValueError("solution_names must name at least one function or class")
        if not self.check_names:
            object.__setattr__(self, "check_names", tuple(self.solution_names))

    def check(self, *fns: Any, **kwargs: Any) -> CheckResult:
        """Run the exercise's check on the learner's function(s); prints and records one line."""
        return self.check_fn(*fns, **kwargs)

    def hint(self) -> None:
        """Print the hint."""
        import textwrap

        print(textwrap.fill(f"💡 {self.name}: {self.hint_text}", width=100))

    def solution_source(self) -> str:
        """The reference code of this exercise, as written in ``genai_lab/solutions/<topic>.py``."""
        from .. import solutions

        return solutions.source(self.topic, self.solution_names)

    def solution(self) -> None:
        """Print the reference solution as a Markdown code block (try your own first!)."""
        print(f"Reference solution of {self.name} (genai_lab/solutions/{self.topic}.py):\n"
              f"```python\n{self.solution_source()}\n```")


def exercises_of(module: Any) -> list[Exercise]:
    """The :class:`Exercise` objects a checks module defines, in the order it defines them."""
    return [v for v in vars(module).values() if isinstance(v, Exercise)]
