"""Every executed notebook of the build is clean: no progress bar, stray repr, warning (nothing on
stderr, which is also where the figure audit reports overlapping labels and powers-of-ten log
axes), error, or output printed twice.  Runs on the executed copies in ``_stage/`` after
``make notebooks``."""

from pathlib import Path

import pytest

from genai_lab import audit

ROOT = Path(__file__).resolve().parents[2]
EXECUTED = sorted(p for folder in ("book", "labs") for p in (ROOT / "_stage" / folder).glob("*.ipynb"))


@pytest.mark.skipif(not EXECUTED, reason="no executed notebooks in _stage/ (run make notebooks)")
@pytest.mark.parametrize("notebook", EXECUTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_executed_notebook_has_clean_outputs(notebook):
    findings = audit.output_problems(notebook)
    assert not findings, "\n".join(map(str, findings))
