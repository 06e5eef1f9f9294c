import pytest
import torch

from genai_lab import text


def test_char_tokenizer_roundtrip_and_errors():
    tok = text.CharTokenizer.from_text("hello world")
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.decode(torch.tensor(tok.encode("low"))) == "low"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")
    with pytest.raises(ValueError, match="ids"):
        tok.decode([99])
    with pytest.raises(ValueError, match="chars"):
        text.CharTokenizer(["a", "a"])


def test_shakespeare_split_is_the_shared_one():
    corpus = text.shakespeare_chars()
    assert corpus.tokenizer.vocab_size == 65
    assert len(corpus.train) + len(corpus.val) == 1115394
    assert corpus.tokenizer.decode(corpus.val[:5]) == corpus.val_text[:5]


def test_random_windows_shift_by_one():
    data = torch.arange(100)
    x, y = text.random_windows(data, 8, 4, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="block_size"):
        text.random_windows(data, 100, 2)
