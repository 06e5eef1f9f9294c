import pytest
import torch

from genai_lab import viz


def test_plots_have_titles_and_labels():
    ax = viz.heatmap(torch.rand(3, 4), ["a", "b", "c"], list("wxyz"), title="T", xlabel="key", ylabel="query")
    assert ax.get_title() == "T" and ax.get_xlabel() == "key"
    ax = viz.bar_chart(["x", "y"], [0.2, 0.8], title="probs", ylabel="p")
    assert ax.get_title() == "probs"
    fig = viz.show_images(torch.rand(5, 1, 8, 8), labels=list("abcde"), title="grid")
    assert fig._suptitle.get_text() == "grid"


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="matrix"):
        viz.heatmap(torch.rand(2, 2, 2))
    with pytest.raises(ValueError, match="labels"):
        viz.show_images(torch.rand(2, 8, 8), labels=["a"])


def test_bertviz_view_is_offline():
    from genai_lab import models

    tok, enc = models.load_minilm("encoder")
    batch = tok("This is a pen.", return_tensors="pt")
    with torch.no_grad():
        att = enc(**batch, output_attentions=True).attentions
    tokens = tok.convert_ids_to_tokens(batch["input_ids"][0])
    for view in ("head", "model"):
        html = viz.bertviz_view(att, tokens, view=view).data
        assert "cdnjs" not in html and "data:application/javascript;base64," in html
        assert "requirejs(['jquery', 'd3']" in html
    with pytest.raises(ValueError, match="tokens"):
        viz.bertviz_view(att, tokens[:-1])
    with pytest.raises(ValueError, match="view"):
        viz.bertviz_view(att, tokens, view="neuron")
