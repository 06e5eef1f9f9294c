import pytest
import torch

from genai_lab import checks


def _double(x):
    return 2 * x


def _todo(x):
    raise NotImplementedError


def _crash(x):
    return x / "a"


def test_pass_fail_todo_and_crash_are_reported(capsys):
    cases = [((torch.tensor([1.0, 2.0]),), {}, torch.tensor([2.0, 4.0]))]
    assert checks.check_function(_double, cases).status == checks.PASSED
    r = checks.check_function(lambda x: x, cases, name="identity")
    assert r.status == checks.FAILED and "worst at index (1,)" in r.message and "expected 4" in r.message
    assert checks.check_function(_todo, cases).status == checks.TODO
    r = checks.check_function(_crash, cases)
    assert r.status == checks.FAILED and "TypeError" in r.message
    assert "not implemented yet" in capsys.readouterr().out


def test_shape_and_type_differences_are_described():
    d = checks.describe_difference
    assert "shape (2,)" in d(torch.zeros(2), torch.zeros(3))
    assert "should be a tensor" in d([0, 0], torch.zeros(2))
    assert d(1.0 + 1e-7, 1.0) is None and "expected 1" in d(1.5, 1.0)
    assert "keys differ" in d({"a": 1}, {"b": 1})
    assert "length 1" in d([1], [1, 2])
    assert "NaN" in d(torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_summary_is_strict_only_when_asked(monkeypatch):
    checks.RESULTS.clear()
    checks.check_function(_todo, [((1,), {}, 2)])
    monkeypatch.delenv("GENAI_LAB_STRICT_CHECKS", raising=False)
    assert len(checks.summary()) == 1
    checks.check_function(_todo, [((1,), {}, 2)])
    monkeypatch.setenv("GENAI_LAB_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="not implemented"):
        checks.summary()
    checks.check_function(_double, [((1,), {}, 2)])
    assert checks.summary()[0].passed


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn"):
        checks.check_function(3, [((1,), {}, 1)])
    with pytest.raises(ValueError, match="cases"):
        checks.check_function(_double, [])
