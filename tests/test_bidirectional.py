"""Future-token perturbation: causal decoders ignore later tokens exactly, bidirectional encoders do not."""

import pytest
import torch

import genai_lab as gl
from genai_lab.bidirectional import first_changed_position, future_token_sensitivity
from genai_lab.gpt import GPTConfig, TinyGPT


@pytest.fixture(autouse=True)
def smoke():
    gl.setup("smoke", verbose=False)


def pair(T=12, position=7, vocab=50, seed=0, change_after=True):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab, (T,), generator=gen)
    b = a.clone()
    b[position] = (a[position] + 1) % vocab
    if change_after:
        b[position + 1:] = torch.randint(0, vocab, (T - position - 1,), generator=gen)
    return a, b


def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertModel(config).eval()


def test_causal_tiny_gpt_earlier_logits_do_not_move():
    torch.manual_seed(0)
    gpt = TinyGPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    a, b = pair(position=7)
    change = future_token_sensitivity(lambda ids: gpt(ids).logits, a, b, 7)
    assert change.shape == (12,) and change.dtype == torch.float32
    assert change[:7].max() < 1e-6  # exactly zero in practice
    assert change[7:].min() > 1e-4  # from the changed token on, everything moves


def test_causal_hf_gpt2_earlier_logits_do_not_move():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=0, eos_token_id=0)).eval()
    a, b = pair(position=4)
    change = future_token_sensitivity(lambda ids: model(input_ids=ids).logits, a, b, 4, relative=True)
    assert change[:4].max() < 1e-6 and change[4] > 1e-4


def test_bidirectional_bert_earlier_states_move():
    bert = tiny_bert()
    a, b = pair(position=9, change_after=False)  # only one later token changes
    change = future_token_sensitivity(lambda ids: bert(input_ids=ids).last_hidden_state, a, b, 9, relative=True)
    # an untrained BERT (weights ~0.02) attends almost uniformly, so the moves are small, yet far
    # above float rounding (~1e-7): every earlier position reads the later token
    assert change[:9].min() > 1e-4


def test_sensitivity_is_the_max_abs_difference_per_position():
    bert = tiny_bert()
    a, b = pair(position=5)
    with torch.no_grad():
        ha, hb = bert(input_ids=a[None]).last_hidden_state[0], bert(input_ids=b[None]).last_hidden_state[0]
    expected = (ha - hb).abs().amax(-1)
    fn = lambda ids: bert(input_ids=ids).last_hidden_state  # noqa: E731
    torch.testing.assert_close(future_token_sensitivity(fn, a, b, 5), expected)
    torch.testing.assert_close(future_token_sensitivity(fn, a[None], b.tolist(), 5, relative=True),
                               expected / ha.abs().amax(-1))
    # outputs of shape (T, D) work as well as (1, T, D)
    torch.testing.assert_close(future_token_sensitivity(lambda ids: fn(ids)[0], a, b, 5), expected)


def test_real_minilm_encoder_reads_the_future():
    tok, model = gl.models.load_minilm("encoder")
    a = torch.tensor(tok("the cat sat on the mat near the door")["input_ids"])
    b = torch.tensor(tok("the cat sat on the mat near the fire")["input_ids"])
    position = first_changed_position(a, b)
    assert tok.convert_ids_to_tokens(int(b[position])) == "fire"
    change = future_token_sensitivity(lambda ids: model(input_ids=ids).last_hidden_state, a, b, position,
                                      relative=True)
    assert change[:position].min() > 1e-2


@pytest.mark.slow
def test_real_smollm2_earlier_logits_do_not_move():
    tok, model = gl.models.load_smollm2()
    a = torch.tensor(tok("The cat sat on the mat near the door")["input_ids"])
    b = torch.tensor(tok("The cat sat on the mat near the fire")["input_ids"])
    position = first_changed_position(a, b)
    change = future_token_sensitivity(lambda ids: model(input_ids=ids).logits, a, b, position)
    assert change[:position].max() < 1e-5 and change[position] > 1e-2


def test_first_changed_position():
    assert first_changed_position([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert first_changed_position(torch.tensor([[5, 6]]), torch.tensor([5, 7])) == 1
    with pytest.raises(ValueError, match="ids_b"):
        first_changed_position([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="identical"):
        first_changed_position([1, 2, 3], [1, 2, 3])


def test_bad_inputs_are_named():
    fn = lambda ids: torch.zeros(1, ids.shape[1], 3)  # noqa: E731
    a, b = [1, 2, 3, 4], [1, 2, 9, 4]
    with pytest.raises(TypeError, match="model_fn"):
        future_token_sensitivity("model", a, b, 2)
    with pytest.raises(TypeError, match="ids_a"):
        future_token_sensitivity(fn, torch.tensor([1.0, 2.0, 3.0, 4.0]), b, 2)
    with pytest.raises(TypeError, match="ids_b"):
        future_token_sensitivity(fn, a, "1 2 9 4", 2)
    with pytest.raises(ValueError, match="ids_a"):
        future_token_sensitivity(fn, [1], [2], 0)
    with pytest.raises(ValueError, match="ids_b"):
        future_token_sensitivity(fn, a, [1, 2, 9], 2)
    with pytest.raises(TypeError, match="position"):
        future_token_sensitivity(fn, a, b, 2.0)
    with pytest.raises(ValueError, match="position"):
        future_token_sensitivity(fn, a, b, 0)
    with pytest.raises(ValueError, match="position"):
        future_token_sensitivity(fn, a, b, 4)
    with pytest.raises(ValueError, match="ids_b must equal ids_a before position 3"):
        future_token_sensitivity(fn, a, b, 3)  # they already differ at 2
    with pytest.raises(ValueError, match="ids_b must differ"):
        future_token_sensitivity(fn, a, b, 1)
    with pytest.raises(TypeError, match="relative"):
        future_token_sensitivity(fn, a, b, 2, relative="yes")
    with pytest.raises(ValueError, match="model_fn"):
        future_token_sensitivity(lambda ids: torch.zeros(1, 7, 3), a, b, 2)
    with pytest.raises(TypeError, match="model_fn"):
        future_token_sensitivity(lambda ids: ids, a, b, 2)
