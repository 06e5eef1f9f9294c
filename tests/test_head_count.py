"""genai_lab.head_count: the look-up task is what it says, and the comparison is real."""

import pytest
import torch

from genai_lab import head_count as H


def test_lookup_answers_read_the_three_offsets_in_order():
    x, y = H.lookup_batch(3, torch.Generator().manual_seed(0), length=8, vocab=4)
    for row in range(3):
        for i in range(8):
            a, b, c = (int(x[row, (i + o) % 8]) for o in H.OFFSETS)
            assert int(y[row, i]) == 16 * a + 4 * b + c


def test_a_trained_encoder_beats_chance_and_one_head_learns_this_lookup_faster():
    # chance is 1/64; both settings train from the same seeds and batches
    one = [H.train_lookup(1, 100, seed=s) for s in range(3)]
    eight = [H.train_lookup(8, 100, seed=s) for s in range(3)]
    assert min(one) > 0.4 and sum(one) / 3 > sum(eight) / 3 + 0.2


@pytest.mark.parametrize("call, match", [
    (lambda: H.lookup_batch(0, torch.Generator()), "n must"),
    (lambda: H.train_lookup(1, 0), "steps must"),
    (lambda: H.compare_heads(heads=(3,)), "heads must"),
    (lambda: H.compare_heads(seeds=0), "seeds must"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_attention_by_offset_rows_are_distributions_over_the_positions():
    model = H.fit_lookup(2, 1, seed=0)
    mass = H.attention_by_offset(model, offsets=range(-4, 4), size=20)   # all 8 positions of 8
    assert mass.shape == (2, 8)
    assert torch.allclose(mass.sum(1), torch.ones(2), atol=1e-5)
