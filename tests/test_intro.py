import pytest

from genai_lab import intro


def test_matmul_gflops_measures_something_positive():
    assert intro.matmul_gflops(64, repeats=2) > 0
    assert intro.python_loop_gflops(8) > 0


def test_scale_table_is_ordered_and_honest_about_unknowns():
    years = [m.year for m in intro.GPT_SCALE]
    assert years == sorted(years)
    known = [m.parameters for m in intro.GPT_SCALE if m.parameters]
    assert known == sorted(known) and known[0] == 117e6 and known[-1] == 175e9
    assert all(m.parameters is None for m in intro.GPT_SCALE if m.name.startswith("GPT-4"))


@pytest.mark.parametrize("call, match", [(lambda: intro.matmul_gflops(0), "n"),
                                         (lambda: intro.matmul_gflops(8, repeats=0), "repeats"),
                                         (lambda: intro.python_loop_gflops(1000), "n")])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_model_families_table_says_which_weights_are_open_and_hides_no_unknown_size():
    families = {m.name: m for m in intro.MODEL_FAMILIES}
    for name in ("GPT-4o", "Claude 3.5", "Gemma 2", "Llama 3.1"):
        assert name in families
    for m in intro.MODEL_FAMILIES:
        # a closed model's size is not published: the table must not invent one
        assert (m.sizes is None) == (not m.open_weights), m.name
    table = intro.format_model_families()
    assert "405B" in table and "135M" in table and table.count("undisclosed") == 3
