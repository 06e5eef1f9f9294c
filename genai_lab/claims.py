"""Claims: the lessons a page draws, stated in code and checked against its own run.

A notebook states each qualitative lesson its prose draws with the numbers behind it::

    gl.claim("The LSTM ({lstm:.3f} nats/char) beats the best n-gram ({ngram:.3f})",
             lambda lstm, ngram: lstm < ngram, shown_from="cpu",
             lstm=val_loss, ngram=kn5_loss,
             recorded={"lstm": "rnn/lstm_val_nats_per_char", "ngram": "rnn/kneser_ney_5gram"})

The call renders one visible line on the page:

- ``✓`` and the numbers when the claim holds in this run;
- at or above ``shown_from`` a claim that does not hold raises :class:`ClaimError`, so the run
  (``make test`` at smoke, ``make book`` at cpu or gpu) fails instead of publishing a false lesson;
- below ``shown_from`` a claim that does not hold says plainly that a run this small does not show
  it, and quotes the figures recorded at ``shown_from`` (``genai_lab/results/<profile>.json``,
  written by ``python -m genai_lab bench --profile … --record``) with their provenance, or says
  "not yet recorded".

``holds`` is a bool or a function of the numbers.  Claims that quote recorded figures must use a
function (a ``lambda`` of the number names), so that the recorded figures can be checked the same
way; the test suite does exactly that for every claim in every notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .config import PROFILES, current

#: a profile's rank: smoke < cpu < gpu
RANK = {name: i for i, name in enumerate(PROFILES)}


class ClaimError(AssertionError):
    """A lesson the page draws is false in a run at or above the profile that must show it."""


@dataclass
class Claim:
    """One stated lesson and what this run (and the record) says about it."""

    text: str
    holds: bool
    profile: str
    shown_from: str
    numbers: dict = field(default_factory=dict)
    recorded: dict | None = None          # {name: value} at shown_from, when quoted
    recorded_holds: bool | None = None
    provenance: str = ""

    @property
    def shown_here(self) -> bool:
        """True when this run is large enough that the claim must hold."""
        return RANK[self.profile] >= RANK[self.shown_from]

    def markdown(self) -> str:
        """The line shown on the page."""
        here = _format_numbers(self.numbers)
        if self.holds:
            line = f"✓ **{self.text}**"
            return line + (f" — this run ({self.profile}): {here}" if here else f" — this run ({self.profile})")
        lines = [f"○ **{self.text}** — a `{self.profile}` run is too small to show this"
                 + (f" (here: {here})." if here else ".")]
        if self.recorded is None:
            lines.append(f"The `{self.shown_from}` profile shows it; its figures are not yet recorded.")
        else:
            mark = "✓" if self.recorded_holds else "✗"
            lines.append(f"Recorded at `{self.shown_from}` ({self.provenance}): "
                         f"{_format_numbers(self.recorded)} {mark}")
        return "  \n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.markdown().replace("**", "").replace("`", "").replace("  \n", "\n")

    __repr__ = __str__


def _format_numbers(numbers: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {_fmt(v)}" for k, v in numbers.items())


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _evaluate(holds, numbers: Mapping[str, float], what: str) -> bool:
    """``holds`` (a bool, or a function of the numbers) as a bool; numpy and 0-d tensor bools pass."""
    result = holds(**numbers) if callable(holds) else holds
    try:
        return bool(result)
    except (TypeError, RuntimeError, ValueError) as exc:  # e.g. a tensor of several values
        raise TypeError(f"holds must give a bool for {what}, got {type(result).__name__}") from exc


def claim(text: str, holds: bool | Callable[..., bool], *, shown_from: str = "smoke",
          recorded: Mapping[str, str] | None = None, display: bool = True,
          profile: str | None = None, **numbers: float) -> Claim:
    """State a lesson with the numbers behind it; show it on the page; fail the run if it is false.

    Args:
        text: the lesson in one sentence; may use ``{name}`` / ``{name:.3f}`` fields of ``numbers``.
        holds: whether the lesson holds: a bool, or a function of the numbers (keyword
            arguments named like ``numbers``) returning a bool.  Required to be a function when
            ``recorded`` is given.
        shown_from: the smallest profile whose run shows the lesson (``smoke``, ``cpu``, ``gpu``).
            At or above it a false claim raises :class:`ClaimError`.
        recorded: for runs below ``shown_from``: maps each number's name to the recorded bench
            metric ``"chapter/metric"`` at ``shown_from`` that stands for it.
        display: show the line in the notebook (``IPython.display``); the claim is returned too.
        profile: the profile of this run (default: the current ``gl.setup()`` profile).
        **numbers: the figures behind the lesson (finite numbers).

    Returns:
        The :class:`Claim` (``.holds``, ``.numbers``, ``.markdown()``).

    Raises:
        ClaimError: the claim is false and this run is at or above ``shown_from``.
        ValueError / TypeError: bad arguments (named).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty str")
    if shown_from not in RANK:
        raise ValueError(f"shown_from must be one of {PROFILES}, got {shown_from!r}")
    if not (callable(holds) or isinstance(holds, bool) or type(holds).__name__ == "bool_"):
        raise TypeError(f"holds must be a bool or a function of the numbers, got {type(holds).__name__}")
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise TypeError(f"number {name!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise ValueError(f"number {name!r} must be finite, got {value!r}")
    numbers = {k: (v if isinstance(v, int) else float(v)) for k, v in numbers.items()}
    if recorded is not None:
        if not callable(holds):
            raise TypeError("holds must be a function of the numbers when recorded figures are quoted")
        missing = sorted(set(numbers) - set(recorded))
        if missing:
            raise ValueError(f"recorded must name a metric for every number; missing {missing}")
    profile = profile or current().profile
    if profile not in RANK:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    try:
        rendered = text.format(**numbers)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"text has a field that numbers do not fill: {exc}") from None
    ok = _evaluate(holds, numbers, "this run")
    result = Claim(rendered, ok, profile, shown_from, numbers)
    if not ok and result.shown_here:
        raise ClaimError(f"claim does not hold in this {profile} run: {rendered} ({_format_numbers(numbers)})")
    if not ok and recorded is not None:
        from . import results

        quoted = results.recorded_values(shown_from, recorded)
        if quoted is not None:
            values, provenance = quoted
            result.recorded = values
            result.recorded_holds = _evaluate(holds, values, f"the recorded {shown_from} figures")
            result.provenance = provenance
    if display:
        _show(result)
    return result


def _show(result: Claim) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        print(result)
        return
    if get_ipython() is None:
        print(result)
    else:
        display({"text/markdown": result.markdown(), "text/plain": str(result)}, raw=True)
