import pytest
import torch
from torch import nn

from genai_lab import checkpoints, train


def _blobs(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 2.5 * (2 * y[:, None] - 1)
    return x, y


def test_train_loop_learns_and_records():
    torch.manual_seed(0)
    x, y = _blobs()
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = train.accuracy(model, x, y)
    batches = train.infinite_batches(x, y, batch_size=32, generator=torch.Generator().manual_seed(0))
    hist = train.train_loop(model, opt, batches, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                            steps=100, eval_fn=lambda: {"acc": train.accuracy(model, x, y)},
                            eval_every=25, progress=False)
    assert len(hist.losses) == 100 and hist.examples == 3200 and hist.seconds > 0
    assert [s for s, _ in hist.evals["acc"]] == [24, 49, 74, 99]
    assert hist.last("acc") >= 0.95 > before or hist.last("acc") >= before + 0.2
    assert hist.final_loss < hist.losses[0]


def test_train_loop_continues_history_and_time_budget():
    x, y = _blobs(64)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = train.infinite_batches(x, y, batch_size=16)
    loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    hist = train.train_loop(model, opt, batches, loss, steps=5, progress=False)
    hist = train.train_loop(model, opt, batches, loss, steps=5, progress=False, history=hist)
    assert hist.steps == list(range(10))
    short = train.train_loop(model, opt, batches, loss, steps=10_000, max_seconds=0.0, progress=False)
    assert len(short.losses) == 1


def test_infinite_batches_cover_every_row_each_epoch():
    x = torch.arange(10)
    it = train.infinite_batches(x, batch_size=5, generator=torch.Generator().manual_seed(1))
    seen = torch.cat([next(it)[0], next(it)[0]])
    assert sorted(seen.tolist()) == list(range(10))


@pytest.mark.parametrize("call, match", [
    (lambda: next(train.infinite_batches(torch.zeros(3), torch.zeros(4), batch_size=2)), "first dimension"),
    (lambda: next(train.infinite_batches(torch.zeros(3), batch_size=0)), "batch_size"),
    (lambda: train.train_loop(nn.Linear(1, 1), torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1), iter([]),
                              lambda m, b: 0, steps=0), "steps"),
    (lambda: train.accuracy(nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(2)), "same length"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_count_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    assert train.count_parameters(model) == 3 * 4 + 4 + 4 * 2 + 2
    assert train.count_parameters(model, trainable_only=True) == 4 + 4 * 2 + 2


def test_load_or_train_caches_by_profile_and_config(monkeypatch, tmp_path, cfg):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    calls = []

    def fit(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"loss": 0.1}

    m1, meta1 = checkpoints.load_or_train("toy", cfg, {"width": 3}, lambda: nn.Linear(3, 3), fit)
    m2, meta2 = checkpoints.load_or_train("toy", cfg, {"width": 3}, lambda: nn.Linear(3, 3), fit)
    assert len(calls) == 1 and meta2["metrics"] == {"loss": 0.1}
    assert torch.equal(m1.weight, m2.weight) and not m2.training
    checkpoints.load_or_train("toy", cfg, {"width": 4}, lambda: nn.Linear(3, 3), fit)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="name"):
        checkpoints.checkpoint_path("a/b", "smoke", {})


def test_load_or_train_handles_tied_weights(monkeypatch, tmp_path, cfg):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight

    checkpoints.load_or_train("tied", cfg, {}, Tied, lambda m: None)
    m, _ = checkpoints.load_or_train("tied", cfg, {}, Tied, lambda m: None)
    assert m.head.weight.data_ptr() == m.emb.weight.data_ptr()
