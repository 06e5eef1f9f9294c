"""Every lab: its learner version runs to the end and every check says "not implemented yet".

(The labs as written, with solutions, are executed by nbmake with GENAI_LAB_STRICT_CHECKS=1, so
every check must pass there.)
"""

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from genai_lab import labs

LABS = labs.lab_notebooks()


def test_stub_source_keeps_signatures_and_docstrings():
    src = ('import torch\n\nclass Cell(torch.nn.Module):\n    """A cell."""\n\n    def __init__(self, n):\n'
           '        super().__init__()\n        self.n = n\n\n    def forward(self, x):\n        return x * self.n\n\n'
           '@staticmethod\ndef f(a,\n      b=2):\n    return a + b\n\nX = f(1)\n')
    out = labs.stub_source(src)
    assert "import torch" in out and '"""A cell."""' in out
    assert "def __init__(self, n):" in out and "def f(a,\n      b=2):" in out and "@staticmethod" in out
    assert "return" not in out and "X = f(1)" not in out
    assert out.count("raise NotImplementedError") == 3
    compile(out, "<stub>", "exec")


def test_student_notebook_requires_solution_cells():
    with pytest.raises(ValueError, match="solution"):
        labs.student_notebook({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": []}]})


@pytest.mark.parametrize("lab", LABS, ids=[p.name for p in LABS])
def test_student_version_runs_and_reports_not_implemented(lab, tmp_path, monkeypatch):
    monkeypatch.delenv("GENAI_LAB_STRICT_CHECKS", raising=False)
    (student,) = labs.write_student_versions(tmp_path, [lab])
    nb = nbformat.read(student, as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = json.dumps([o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])])
    m = re.search(r"Lab summary: (\d+) passed, (\d+) failed, (\d+) not implemented yet", text)
    assert m, "the lab must end with gl.checks.summary()"
    passed, failed, todo = map(int, m.groups())
    assert (passed, failed) == (0, 0) and todo >= 3, m.group(0)
