"""RLHF's pieces on tiny models: the reward model learns a taste, best-of-n keeps the best, DPO shifts the policy."""

import math

import pytest
import torch

from genai_lab import preference as pref
from genai_lab.gpt import GPTConfig, TinyGPT


class Letters:
    """A five-symbol tokenizer: 0 'a', 1 '\\n', 2 'b', 3 'c', 4 'd'."""

    chars = ["a", "\n", "b", "c", "d"]
    vocab_size = 5

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=5, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).eval()


def test_line_breaks_counts_newlines_and_names_bad_input():
    assert pref.line_breaks(["a\nb\n", "abc", "\n"]).tolist() == [2.0, 0.0, 1.0]
    with pytest.raises(TypeError, match="texts"):
        pref.line_breaks("a\nb")


def test_dpo_loss_is_log2_at_the_reference_and_falls_as_the_chosen_answer_gains():
    logp = torch.tensor([-5.0, -7.0, -3.0])
    at_reference = pref.dpo_loss(logp, logp - 1, logp, logp - 1, beta=0.5)
    assert math.isclose(at_reference.item(), math.log(2), rel_tol=1e-6)
    better = pref.dpo_loss(logp + 1, logp - 1, logp, logp - 1, beta=0.5)
    assert better.item() < at_reference.item()
    with pytest.raises(ValueError, match="beta"):
        pref.dpo_loss(logp, logp, logp, logp, beta=0)


def test_reward_model_learns_the_taste_from_pairs():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 5, (400, 12), generator=gen)
    newlines = (rows == 1).sum(1)
    a, b = rows[0::2], rows[1::2]
    keep = newlines[0::2] != newlines[1::2]
    a_wins = (newlines[0::2] > newlines[1::2])[keep]
    a, b = a[keep], b[keep]
    chosen = torch.where(a_wins[:, None], a, b)
    rejected = torch.where(a_wins[:, None], b, a)
    prompt = torch.zeros(len(chosen), 4, dtype=torch.long)
    pairs = pref.PreferencePairs(torch.cat([prompt, chosen], 1), torch.cat([prompt, rejected], 1), 4)
    n_fit = int(0.75 * len(pairs))
    fit = pref.PreferencePairs(pairs.chosen[:n_fit], pairs.rejected[:n_fit], 4)
    held = pref.PreferencePairs(pairs.chosen[n_fit:], pairs.rejected[n_fit:], 4)
    reward, losses = pref.fit_reward_model(fit, 5, steps=200, generator=gen)
    assert losses[-1] < 0.5 * losses[0]
    assert int(reward.score.weight[0].argmax()) == 1        # the newline symbol is the one it likes
    assert pref.pair_accuracy(reward, held) >= 0.9


def test_best_of_n_keeps_the_highest_scoring_sample():
    model = tiny_gpt()
    reward = pref.BagOfCharsReward(5)
    with torch.no_grad():
        reward.score.weight[0, 1] = 1.0                        # likes newlines, nothing else
    prompts = torch.zeros(6, 4, dtype=torch.long)
    best = pref.best_of_n(model, reward, prompts, 8, 4, generator=torch.Generator().manual_seed(1))
    again = pref.sample_continuations(model, prompts, 8, n=4, generator=torch.Generator().manual_seed(1))
    scores = reward(again[:, 4:]).view(6, 4)
    assert torch.equal(reward(best[:, 4:]), scores.max(dim=1).values)
    with pytest.raises(ValueError, match="length"):
        pref.sample_continuations(model, prompts, 13, generator=torch.Generator())


def test_dpo_moves_the_policy_toward_the_chosen_continuations():
    model = tiny_gpt()
    tok = Letters()
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 5, (256, 4), generator=gen)
    pairs = pref.preference_pairs(model, tok, prompts, 8, generator=gen)
    assert len(pairs) > 100
    chosen_taste = pref.taste_of_samples(tok, pairs.chosen, 4)
    assert bool((chosen_taste > pref.taste_of_samples(tok, pairs.rejected, 4)).all())
    eval_prompts = torch.randint(0, 5, (200, 4), generator=gen)
    before = pref.taste_of_samples(tok, pref.sample_continuations(model, eval_prompts, 8, generator=gen), 4)
    reference, result = pref.train_dpo(model, pairs, beta=0.5, lr=3e-3, steps=40, batch_size=32, generator=gen)
    assert result.losses[-1] < math.log(2) - 0.1
    samples = pref.sample_continuations(model, eval_prompts, 8, generator=gen)
    after = pref.taste_of_samples(tok, samples, 4)
    mean_before, se_before = pref.mean_and_se(before)
    mean_after, se_after = pref.mean_and_se(after)
    assert mean_after - mean_before > 3 * math.hypot(se_before, se_after)
    assert pref.kl_from_reference(model, reference, samples, 4) > 0
    with pytest.raises(ValueError, match="batch_size"):
        pref.train_dpo(model, pairs, batch_size=10_000, generator=gen)


def test_continuation_logprob_matches_the_chapters_scorer_and_keeps_gradients():
    from genai_lab.gpt import mean_log_likelihood

    model = tiny_gpt()
    ids = torch.randint(0, 5, (3, 12), generator=torch.Generator().manual_seed(0))
    summed = pref.continuation_logprob(model, ids, 4)
    torch.testing.assert_close(summed, mean_log_likelihood(model, ids, start=4) * 8)
    assert summed.requires_grad
    with pytest.raises(ValueError, match="prompt_len"):
        pref.continuation_logprob(model, ids, 12)
