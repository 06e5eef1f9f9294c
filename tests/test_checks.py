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


# --------------------------------------------------------------------------- classic mistakes are named
def _wrong_attention(scale_by_sqrt_dk: bool, softmax_dim: int):
    def attention(query, key, value, mask=None):
        scores = query @ key.transpose(-2, -1)
        if scale_by_sqrt_dk:
            scores = scores / query.shape[-1] ** 0.5
        weights = torch.softmax(scores, dim=softmax_dim)
        return weights @ value, weights
    return attention


def test_attention_check_names_missing_scaling_and_wrong_softmax_axis(capsys):
    from genai_lab.checks import attention as lab

    assert lab.attention.check(_wrong_attention(True, -1)).passed
    r = lab.attention.check(_wrong_attention(False, -1))
    assert not r.passed and "not divided by √d_k" in r.message
    r = lab.attention.check(_wrong_attention(True, -2))
    assert not r.passed and "softmax runs over the queries" in r.message
    r = lab.attention.check(lambda q, k, v, mask=None: (v[..., :q.shape[-2], :] * 0, None))
    assert not r.passed and "looks like" not in r.message  # no diagnosis for an unrelated mistake


def test_lstm_check_names_the_gate_order():
    from genai_lab.checks import rnn as lab

    def lstm_step_ifog(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
        i, f, o, g = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_next), c_next

    r = lab.lstm_step.check(lstm_step_ifog)
    assert not r.passed and "order i, f, o, g" in r.message and "i, f, g, o" in r.message


def test_conv2d_check_names_a_flipped_kernel():
    import torch.nn.functional as F

    from genai_lab.checks import cnn as lab

    def true_convolution(x, weight, bias=None, stride=1, padding=0):
        return F.conv2d(x, weight.flip(-2, -1), bias, stride=stride, padding=padding)

    r = lab.conv2d.check(true_convolution)
    assert not r.passed and "kernel is flipped" in r.message


def test_top_p_check_names_the_dropped_crossing_token():
    from genai_lab.checks import gpt as lab

    def top_p_inclusive(scores, p):
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        remove = sorted_scores.softmax(-1).cumsum(-1) >= p
        remove[:, 0] = False
        return scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))

    r = lab.top_p.check(top_p_inclusive)
    assert not r.passed and "running sum reach p" in r.message


def test_temperature_and_similarity_checks_name_their_mistakes():
    from genai_lab.checks import gan_clip, rnn

    def power_t(probs, temperature):
        powered = probs.double() ** temperature
        return (powered / powered.sum()).to(probs.dtype)

    r = rnn.apply_temperature.check(power_t)
    assert not r.passed and "power T" in r.message
    r = gan_clip.similarity_matrix.check(lambda image_emb, text_emb: image_emb @ text_emb.T)
    assert not r.passed and "not normalised" in r.message


def test_name_mistake_and_expect():
    wrong = {"doubled": lambda: torch.tensor([2.0, 4.0]), "raises": lambda: 1 / 0}
    assert checks.name_mistake(torch.tensor([2.0, 4.0]), wrong) == " — looks like: doubled"
    assert checks.name_mistake(torch.tensor([0.0, 0.0]), wrong) == ""
    compare = checks.expect(torch.tensor([1.0, 2.0]), wrong)
    assert compare(torch.tensor([1.0, 2.0])) is None
    assert compare(torch.tensor([2.0, 4.0])).endswith("looks like: doubled")
    with pytest.raises(TypeError, match="mistakes"):
        checks.name_mistake(1.0, [lambda: 1.0])


def test_intro_checks_name_a_missing_size_check_and_an_unfair_timer():
    import time

    from genai_lab.checks import intro

    def matmul_without_size_check(a, b):
        return [[sum(a[i][p] * b[p][j] for p in range(len(b))) for j in range(len(b[0]))]
                for i in range(len(a))]

    r = intro.matmul.check(matmul_without_size_check)
    assert not r.passed and "should raise ValueError" in r.message

    def timed_first_call_too(work, repeats=5):
        if repeats < 1:
            raise ValueError("repeats")
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return max(times)

    r = intro.best_time.check(timed_first_call_too)
    assert not r.passed and "warm-up" in r.message
    from genai_lab.solutions import intro as reference
    assert intro.best_time.check(reference.best_time).passed


def test_freezing_perplexity_and_greedy_checks_name_their_mistakes():
    import torch.nn.functional as F

    from genai_lab import transformer as T
    from genai_lab.checks import attention, cnn, rnn

    def freeze_everything(model, new_layer):
        for p in model.parameters():
            p.requires_grad = False
        return list(new_layer.parameters())

    def same_lr(model, new_layer, lr):
        return [{"params": list(new_layer.parameters()), "lr": lr},
                {"params": [p for p in model.parameters() if all(p is not q for q in new_layer.parameters())],
                 "lr": lr}]

    from genai_lab.solutions import cnn as cnn_ref
    r = cnn.freezing.check(freeze_everything, cnn_ref.fine_tuning_groups)
    assert not r.passed and "new layer must stay trainable" in r.message
    r = cnn.freezing.check(cnn_ref.freeze_for_transfer, same_lr)
    assert not r.passed and "lr / 10" in r.message

    def one_over_mean_prob(logits, targets):
        return 1 / F.softmax(logits, -1)[torch.arange(len(targets)), targets].mean()

    r = rnn.perplexity.check(one_over_mean_prob)
    assert not r.passed and "average the log-probabilities" in r.message
    r = rnn.perplexity.check(lambda logits, targets: F.cross_entropy(logits, targets))
    assert not r.passed and "perplexity is its exp" in r.message

    def no_padding_after_eos(model, src, max_new_tokens):
        memory, keep = model.encode(src)
        generated = torch.full((src.shape[0], 1), T.BOS, dtype=torch.long)
        for _ in range(max_new_tokens):
            next_token = model.decode(generated, memory, keep)[:, -1].argmax(-1)
            generated = torch.cat([generated, next_token[:, None]], dim=1)
        return generated

    r = attention.greedy_decode.check(no_padding_after_eos)
    assert not r.passed
