"""The labs belong to the learner: the shipped notebooks hold stubs, the answers live in the package.

- every shipped lab holds only stubs (no line of a reference solution appears in it), runs to the
  end and every check says "not implemented yet";
- every exercise has a hint and a solution that compiles, and the reference solutions pass their
  checks;
- ``python -m genai_lab labs solved`` writes each lab with the solutions filled in, and that
  version passes every check under ``GENAI_LAB_STRICT_CHECKS=1``.
"""

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from genai_lab import cli, labs, solutions

LABS = labs.lab_notebooks()
IDS = [p.stem for p in LABS]
SUMMARY = re.compile(r"Lab summary: (\d+) passed, (\d+) failed, (\d+) not implemented yet")


def _cells(path, kind=None, tag=None):
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        if kind and cell["cell_type"] != kind:
            continue
        if tag and tag not in cell.get("metadata", {}).get("tags", []):
            continue
        out.append("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
    return out


def _run(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _outputs_text(nb) -> str:
    return json.dumps([o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])],
                      ensure_ascii=False)


# --------------------------------------------------------------------------- fast: what is shipped
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


def test_every_lab_has_its_solutions_module_and_exercises():
    assert [labs.lab_topic(p) for p in LABS] == list(solutions.TOPICS)
    assert labs.lab_topic("02_rnn") == labs.lab_topic("labs/02_rnn_lab.ipynb") == "rnn"
    with pytest.raises(ValueError, match="lab"):
        labs.lab_topic("99_nothing")
    with pytest.raises(TypeError, match="lab"):
        labs.lab_topic(2)


@pytest.mark.parametrize("lab", LABS, ids=IDS)
def test_shipped_lab_holds_stubs_only(lab):
    """No line of a reference solution's body appears anywhere in the shipped notebook, and every
    exercise cell is exactly the stub of its reference (same signatures and docstrings)."""
    topic = labs.lab_topic(lab)
    text = lab.read_text(encoding="utf-8")
    nb_sources = "\n".join(_cells(lab))
    assert '"solution"' not in text and '"hide-input"' not in text
    body_lines = solutions.answer_lines(solutions.module_source(topic))
    assert len(body_lines) >= 5
    flowed = nb_sources.replace("\n", " ")  # the site joins a paragraph's lines (and inline code) with spaces
    leaked = sorted(line for line in body_lines if line in nb_sources or line in flowed)
    assert not leaked, f"solution lines in {lab.name}: {leaked}"
    exercise_cells = _cells(lab, "code", labs.EXERCISE_TAG)
    assert len(exercise_cells) >= 2
    for src in exercise_cells:
        assert src.strip() == labs.stub_source(src).strip(), "an exercise cell holds more than the stub"
        assert labs.stub_source(labs.solved_source(src, topic)).strip() == src.strip()
        assert labs.STUB in src


@pytest.mark.parametrize("lab", LABS, ids=IDS)
def test_each_check_cell_is_quiet_and_points_to_hint_and_solution(lab):
    exercises = labs.exercises(lab)
    code = _cells(lab, "code")
    for ex in exercises:
        cells = [c for c in code if f".check_{ex.check_fn.__name__.removeprefix('check_')}(" in c]
        assert len(cells) == 1, f"{ex.name}: expected one check cell"
        lines = cells[0].splitlines()
        i = next(i for i, line in enumerate(lines) if ".check_" in line)
        assert lines[i].endswith(";"), f"{ex.name}: the check call must end with ';' (else it prints twice)"
        assert re.fullmatch(rf"# \w+\.{ex.name}\.hint\(\)  ·  \w+\.{ex.name}\.solution\(\)", lines[i + 1])
    assert code[-1].strip() == "gl.checks.summary();"


@pytest.mark.parametrize("topic", solutions.TOPICS)
def test_every_exercise_has_a_hint_and_a_solution_that_compiles(topic, capsys):
    exercises = labs.exercises(topic)
    assert 3 <= len(exercises) <= 6
    defined = solutions.definitions(topic)
    covered = {name for ex in exercises for name in ex.solution_names}
    assert covered == set(defined), "every reference definition belongs to an exercise"
    for ex in exercises:
        ex.hint()
        shown = capsys.readouterr().out
        assert shown.startswith(f"💡 {ex.name}:") and len(shown) > 60
        for name in ex.solution_names:  # a hint guides; it does not hand over a line of the answer
            assert not any(line in shown.replace("\n", " ") for line in solutions.answer_lines(defined[name]))
        ex.solution()
        shown = capsys.readouterr().out
        code = shown.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
        compile(code, f"<{topic}.{ex.name}>", "exec")
        assert all(f"def {n}(" in code or f"class {n}(" in code for n in ex.solution_names)


@pytest.mark.parametrize("topic", solutions.TOPICS)
def test_reference_solutions_pass_their_checks(topic):
    module = solutions.module(topic)
    for ex in labs.exercises(topic):
        result = ex.check(*[getattr(module, name) for name in ex.check_names])
        assert result.passed, result


def test_solved_version_replaces_the_stubs(tmp_path):
    (solved,) = labs.write_solved_versions(tmp_path, [LABS[2]])
    sources = _cells(solved, "code", labs.EXERCISE_TAG)
    assert sources and not any(labs.STUB in s for s in sources)
    assert "gates" in "\n".join(sources)  # the LSTM reference is in
    with pytest.raises(ValueError, match="exercise"):
        labs.solved_notebook({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": []}]},
                             "rnn")
    with pytest.raises(ValueError, match="source"):
        labs.solved_source("def not_an_exercise():\n    pass\n", "rnn")
    with pytest.raises(FileNotFoundError, match="sources"):
        labs.write_solved_versions(tmp_path, [tmp_path / "missing.ipynb"])


def test_labs_cli_writes_solved_and_fresh_learner_copies(tmp_path):
    assert cli.main(["labs", "solved", str(tmp_path / "solved")]) == 0
    assert sorted(p.name for p in (tmp_path / "solved").glob("*.ipynb")) == [p.name for p in LABS]
    assert cli.main(["labs", "student", str(tmp_path / "fresh"), str(LABS[0])]) == 0
    assert (tmp_path / "fresh" / LABS[0].name).is_file()
    assert cli.main(["labs", "solved", str(tmp_path), "missing.ipynb"]) == 2
    with pytest.raises(ValueError, match="beyond the stub"):  # a lab with an answer saved into it
        labs.student_notebook(json.loads((tmp_path / "solved" / LABS[0].name).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- slow: executing the labs
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=IDS)
def test_shipped_lab_runs_and_reports_not_implemented(lab, tmp_path, monkeypatch):
    monkeypatch.delenv("GENAI_LAB_STRICT_CHECKS", raising=False)
    nb = _run(lab, tmp_path)
    text = _outputs_text(nb)
    m = SUMMARY.search(text)
    assert m, "the lab must end with gl.checks.summary()"
    passed, failed, todo = map(int, m.groups())
    assert (passed, failed) == (0, 0) and todo == len(labs.exercises(lab)), m.group(0)
    assert len(SUMMARY.findall(text)) == 1, "the summary is printed once"
    results = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "execute_result"]
    assert not any(re.search("⏳|✅|❌|Lab summary", json.dumps(o, ensure_ascii=False)) for o in results), \
        "a check's result is displayed a second time (end the call with ';')"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=IDS)
def test_solved_lab_passes_every_check_strictly(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_STRICT_CHECKS", "1")
    (solved,) = labs.write_solved_versions(tmp_path, [lab])
    nb = _run(solved, tmp_path)
    text = _outputs_text(nb)
    m = SUMMARY.search(text)
    assert m and m.groups() == (str(len(labs.exercises(lab))), "0", "0"), m and m.group(0)
    printed = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    long_floats = re.findall(r"\d\.\d{9,}", printed)
    assert not long_floats, f"format the printed numbers: {long_floats[:3]}"
