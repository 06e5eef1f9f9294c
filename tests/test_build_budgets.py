"""The build's notebook budgets (.ci/notebooks.toml, read by .ci/nbbudget.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("nbbudget", ROOT / ".ci" / "nbbudget.py")
nbbudget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nbbudget)


def test_every_notebook_is_in_exactly_one_group():
    every = sorted(str(p.relative_to(ROOT)) for folder in ("book", "labs") for p in (ROOT / folder).glob("*.ipynb"))
    grouped = [k for g in nbbudget.GROUPS for k in nbbudget.notebooks(g)]
    assert sorted(grouped) == every


@pytest.mark.parametrize("profile", nbbudget.PROFILES)
def test_groups_are_handed_out_longest_budget_first(profile):
    data = nbbudget.load()
    for group in nbbudget.GROUPS:
        keys = nbbudget.notebooks(group, data, profile)
        budgets = [nbbudget.budget(k, profile, data) for k in keys]
        assert budgets == sorted(budgets, reverse=True), group
        assert sorted(keys) == nbbudget.notebooks(group, data)  # same notebooks, only reordered


def test_bad_profile_is_named():
    with pytest.raises(ValueError, match="profile"):
        nbbudget.notebooks("others", profile="fast")


def test_the_build_hands_notebooks_out_one_at_a_time():
    makefile = (ROOT / "Makefile").read_text()
    assert "--profile $(NB_PROFILE)" in makefile
    assert makefile.count("--maxschedchunk=1") == 2


def test_report_lists_every_time_and_fails_when_one_failed(tmp_path, capsys):
    import json

    times = tmp_path / "times.json"
    times.write_text(json.dumps({"book/a.ipynb": {"seconds": 10.0, "budget": 60, "passed": True},
                                 "book/b.ipynb": {"seconds": 90.0, "budget": 60, "passed": False}}))
    assert nbbudget.report(times) == 1
    out = capsys.readouterr().out
    assert out.index("book/b.ipynb") < out.index("book/a.ipynb")          # longest first
    assert "FAILED" in out and "100 s of notebook time" in out
    times.write_text(json.dumps({"book/a.ipynb": {"seconds": 10.0, "budget": 60, "passed": True}}))
    assert nbbudget.report(times) == 0
    groups = tmp_path / "failed-groups"
    groups.write_text("timing\n")                                          # a group failed outside the budgets
    assert nbbudget.report(times, groups) == 1
