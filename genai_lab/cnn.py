"""CNNs: a small convolutional classifier, an MLP baseline, and the experiments of chapter 1.

What lives here:

- the networks: :class:`CNNConfig` + :func:`build_cnn` (a :class:`SmallCNN` with ``features``
  and ``head``), :func:`build_mlp` (the dense baseline);
- :func:`trained_classifier`: the CNN trained once per profile and cached; later chapters use it
  to judge generated images (class agreement, confidence, class histogram);
- convolution by hand: :func:`conv2d_manual`, :func:`max_pool2d_manual`,
  :func:`conv_output_size`, :func:`conv2d_parameter_count`, :func:`dense_parameter_count`,
  :func:`receptive_field` (the lab's reference answers);
- kernels that are learned: :func:`learn_kernel` (gradient descent recovers a known filter such
  as :data:`SOBEL_X`), :func:`smooth_energy_fraction` (how smooth a filter is);
- translation: :func:`shift_images`, :func:`accuracy_vs_shift`, :func:`representation_change`,
  :func:`place_on_canvas`, :func:`position_probe_accuracy`;
- transfer learning vs fine-tuning: :func:`pretrained_on_classes`, :func:`adaptation_setup`
  (freezing and parameter groups), :func:`adapt_few_shot`, :func:`compare_adaptation`.

Images everywhere are float32 ``(N, 1, H, W)`` in ``[0, 1]``; classifiers return logits ``(N, C)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .bench import Metric, register
from .checkpoints import load_or_train
from .data import ImageData, load_images
from .train import accuracy, count_parameters, infinite_batches, train_loop

DATASETS = ("digits", "fashion_mnist")


# --------------------------------------------------------------------------- validation helpers
def _check_int(value, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return value


def _check_images(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _check_cfg(cfg):
    from .config import LabConfig

    if not isinstance(cfg, LabConfig):
        raise TypeError(f"cfg must be the LabConfig from gl.setup(), got {type(cfg).__name__}")
    return cfg


def _check_dataset(dataset) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dataset


# --------------------------------------------------------------------------- the networks
@dataclass(frozen=True)
class CNNConfig:
    """Shape of a :class:`SmallCNN`.

    Attributes:
        image_size: height = width of the input (8 for digits, 28 for Fashion-MNIST).
        channels: output channels of each conv block (conv 3x3 → ReLU → max-pool 2x2).
        hidden: width of a dense hidden layer in the head (0: the head is one linear layer).
        num_classes: number of logits.
        kernel_size: odd conv kernel size (padding keeps the spatial size before pooling).
    """

    image_size: int = 8
    channels: tuple[int, ...] = (16, 32)
    hidden: int = 0
    num_classes: int = 10
    kernel_size: int = 3

    def __post_init__(self) -> None:
        _check_int(self.image_size, "image_size")
        _check_int(self.num_classes, "num_classes", 2)
        _check_int(self.hidden, "hidden", 0)
        _check_int(self.kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if not isinstance(self.channels, tuple) or not self.channels:
            raise TypeError(f"channels must be a non-empty tuple of ints, got {self.channels!r}")
        for c in self.channels:
            _check_int(c, "channels[i]")
        if self.image_size // 2 ** len(self.channels) < 1:
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} "
                             "pooling steps")

    @property
    def feature_size(self) -> int:
        """Height = width of the last feature map (each block halves it, rounding down)."""
        return self.image_size // 2 ** len(self.channels)

    @property
    def feature_dim(self) -> int:
        """Length of the flattened last feature map: channels × size²."""
        return self.channels[-1] * self.feature_size ** 2


class SmallCNN(nn.Module):
    """Conv blocks (``features``) followed by a dense classifier (``head``).

    ``features``: ``(N, 1, H, W)`` → ``(N, channels[-1], H/2^B, W/2^B)``, B = number of blocks;
    each block is ``Conv2d(k×k, padding k//2) → ReLU → MaxPool2d(2)``.
    ``head``: flatten → [Linear → ReLU] → Linear → logits ``(N, num_classes)``. The flatten keeps
    the coarse grid of the last feature map, so the head still knows *where* a feature was.
    """

    def __init__(self, config: CNNConfig):
        super().__init__()
        if not isinstance(config, CNNConfig):
            raise TypeError(f"config must be a CNNConfig, got {type(config).__name__}")
        self.config = config
        blocks, in_ch = [], 1
        for out_ch in config.channels:
            blocks.append(nn.Sequential(
                nn.Conv2d(in_ch, out_ch, config.kernel_size, padding=config.kernel_size // 2),
                nn.ReLU(), nn.MaxPool2d(2)))
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.head = build_head(config.feature_dim, config.num_classes, config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (N, 1, H, W)`` → logits ``(N, num_classes)``."""
        return self.head(self.features(x))

    def feature_maps(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Every intermediate map of the conv stack, in order, as ``(name, tensor)``.

        Names are ``conv1``, ``relu1``, ``pool1``, ``conv2``…; tensors ``(N, C, h, w)``.
        """
        _check_images(x)
        out, h = [], x
        for b, block in enumerate(self.features, 1):
            for layer, kind in zip(block, ("conv", "relu", "pool")):
                h = layer(h)
                out.append((f"{kind}{b}", h))
        return out


def build_head(feature_dim: int, num_classes: int, hidden: int = 0) -> nn.Sequential:
    """A classifier head: flatten → [Linear(feature_dim, hidden) → ReLU] → Linear(→ num_classes)."""
    _check_int(feature_dim, "feature_dim")
    _check_int(num_classes, "num_classes", 2)
    _check_int(hidden, "hidden", 0)
    if hidden:
        return nn.Sequential(nn.Flatten(), nn.Linear(feature_dim, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(feature_dim, num_classes))


def build_cnn(config: CNNConfig | None = None, *, seed: int = 0) -> SmallCNN:
    """A freshly initialised :class:`SmallCNN` (weights seeded by ``seed``, global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_check_int(seed, "seed", 0))
        return SmallCNN(config or CNNConfig())


def build_mlp(image_size: int = 8, hidden: Sequence[int] = (128,), num_classes: int = 10, *,
              seed: int = 0) -> nn.Sequential:
    """The dense baseline: flatten ``(N, 1, S, S)`` → Linear/ReLU layers → logits ``(N, classes)``."""
    _check_int(image_size, "image_size")
    _check_int(num_classes, "num_classes", 2)
    if isinstance(hidden, int) or not all(isinstance(h, int) and h >= 1 for h in hidden):
        raise TypeError(f"hidden must be a sequence of positive ints, got {hidden!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_check_int(seed, "seed", 0))
        layers: list[nn.Module] = [nn.Flatten()]
        width = image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)


# --------------------------------------------------------------------------- training recipes
@dataclass(frozen=True)
class TrainRecipe:
    """How a classifier is trained (every field is part of the checkpoint key)."""

    steps: int
    batch_size: int
    lr: float
    max_seconds: float | None = None
    weight_decay: float = 0.0
    seed: int = 0


def cnn_config_for(dataset: str, num_classes: int = 10) -> CNNConfig:
    """The chapter's CNN for ``dataset``: two conv blocks (16, 32 channels) on 8x8 digits; the same
    two blocks plus a 128-unit hidden layer on 28x28 Fashion-MNIST."""
    if _check_dataset(dataset) == "digits":
        return CNNConfig(image_size=8, channels=(16, 32), hidden=0, num_classes=num_classes)
    return CNNConfig(image_size=28, channels=(16, 32), hidden=128, num_classes=num_classes)


def mlp_hidden_for(dataset: str) -> tuple[int, ...]:
    """Hidden widths of the MLP baseline for ``dataset``."""
    return (128,) if _check_dataset(dataset) == "digits" else (256, 128)


def recipe_for(dataset: str, cfg) -> TrainRecipe:
    """Steps, batch size and learning rate for ``dataset`` at ``cfg``'s profile.

    digits (1,347 training images): ~40 epochs of batch 64 (seconds). Fashion-MNIST: smoke uses
    the 6k subset for 300 steps, cpu/gpu all 60k images for up to ~8 epochs; there the learning-rate
    schedule and the loop stop at 270 s at the latest (the issue's budget is 5 minutes).
    """
    if _check_dataset(dataset) == "digits":
        return TrainRecipe(steps=cfg.pick(smoke=800, cpu=1500, gpu=1500), batch_size=64, lr=3e-3)
    return TrainRecipe(steps=cfg.pick(smoke=300, cpu=4000, gpu=6000),
                       batch_size=cfg.pick(smoke=64, cpu=128, gpu=128), lr=2e-3,
                       # smoke is bounded by its steps alone, so CI's figures never depend on
                       # how loaded the machine is; cpu/gpu learners get a wall-clock budget.
                       max_seconds=cfg.pick(smoke=None, cpu=270.0, gpu=270.0))


def budget_cosine_schedule(optimizer, steps: int, max_seconds: float | None = None,
                           warmup_fraction: float = 0.05):
    """Linear warm-up, then cosine decay to 2 % of the learning rate, driven by whichever runs out
    first: the steps or the time budget (so a run stopped by ``max_seconds`` still ends annealed).
    """
    _check_int(steps, "steps")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    import math

    start = time.perf_counter()
    warmup = max(1, int(warmup_fraction * steps))

    def factor(step: int) -> float:
        progress = step / steps
        if max_seconds is not None:
            progress = max(progress, (time.perf_counter() - start) / max_seconds)
        if step < warmup and progress < warmup_fraction:
            return (step + 1) / warmup
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit_classifier(model: nn.Module, data: ImageData, recipe: TrainRecipe, *, device=None,
                   desc: str = "training", eval_every: int | None = None) -> dict:
    """Train ``model`` with Adam + cross-entropy on ``data`` and measure it.

    Args:
        model: maps ``(N, 1, H, W)`` to logits ``(N, C)``; trained in place on ``device``.
        data: an :class:`ImageData` whose labels are ``0..C-1``.
        recipe: steps, batch size, learning rate, time budget, seed of the batch order.
        eval_every: also record the test accuracy this often (for a learning curve).

    Returns:
        ``{"test_accuracy", "train_accuracy", "seconds", "steps", "losses", "test_curve"}``
        (``losses``: one float per step; ``test_curve``: ``[(step, accuracy), ...]``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    if not isinstance(recipe, TrainRecipe):
        raise TypeError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
    device = device or next(model.parameters()).device
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = budget_cosine_schedule(opt, recipe.steps, recipe.max_seconds)
    gen = torch.Generator().manual_seed(recipe.seed)
    batches = infinite_batches(data.train_x, data.train_y, batch_size=recipe.batch_size,
                               generator=gen, device=device)

    def loss_fn(m, batch):
        x, y = batch
        return F.cross_entropy(m(x), y)

    def eval_fn():
        return {"test accuracy": accuracy(model, data.test_x, data.test_y, device=device)}

    hist = train_loop(model, opt, batches, loss_fn, recipe.steps, scheduler=sched,
                      max_seconds=recipe.max_seconds, desc=desc,
                      eval_fn=eval_fn if eval_every else None, eval_every=eval_every)
    model.eval()
    return {"test_accuracy": accuracy(model, data.test_x, data.test_y, device=device),
            "train_accuracy": accuracy(model, data.train_x[:5000], data.train_y[:5000], device=device),
            "seconds": round(hist.seconds, 2), "steps": len(hist.losses),
            "losses": [round(v, 4) for v in hist.losses],
            "test_curve": hist.evals.get("test accuracy", [])}


def _trained(kind: str, cfg, dataset: str, build, verbose: bool) -> tuple[nn.Module, dict]:
    _check_cfg(cfg)
    data = load_images(dataset, cfg)
    recipe = recipe_for(dataset, cfg)
    arch = asdict(cnn_config_for(dataset)) if kind == "cnn" else {"hidden": mlp_hidden_for(dataset)}
    config = {"arch": arch, "recipe": asdict(recipe), "train_size": len(data.train_y),
              "test_size": len(data.test_y), "version": 2}
    return load_or_train(f"{kind}-{dataset}", cfg, config, build,
                         lambda m: fit_classifier(m, data, recipe, device=cfg.device,
                                                  desc=f"{kind} on {dataset}"),
                         verbose=verbose)


def trained_classifier(cfg, dataset: str = "digits", *, verbose: bool = True) -> tuple[nn.Module, dict]:
    """The chapter's CNN trained on ``dataset`` (cached: trained once per profile, then loaded).

    Later chapters use it to judge generated images.

    Args:
        cfg: the :class:`~genai_lab.config.LabConfig` (profile and device).
        dataset: ``"digits"`` (8x8) or ``"fashion_mnist"`` (28x28), via
            :func:`genai_lab.data.load_images`.

    Returns:
        ``(model, meta)``: a :class:`SmallCNN` on ``cfg.device`` in eval mode, taking float32
        ``(N, 1, H, W)`` in ``[0, 1]`` and returning logits ``(N, 10)``; ``meta["metrics"]`` holds
        ``test_accuracy``, ``train_accuracy``, ``seconds`` and the per-step ``losses``.
    """
    _check_dataset(dataset)
    return _trained("cnn", cfg, dataset, lambda: build_cnn(cnn_config_for(dataset), seed=cfg.seed),
                    verbose)


def trained_mlp(cfg, dataset: str = "digits", *, verbose: bool = True) -> tuple[nn.Module, dict]:
    """The MLP baseline trained with the same recipe as :func:`trained_classifier` (cached)."""
    _check_dataset(dataset)
    size = 8 if dataset == "digits" else 28
    return _trained("mlp", cfg, dataset,
                    lambda: build_mlp(size, mlp_hidden_for(dataset), seed=cfg.seed), verbose)


# --------------------------------------------------------------------------- convolution by hand
def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length along one axis: ``floor((size + 2·padding − kernel_size) / stride) + 1``."""
    _check_int(size, "size")
    _check_int(kernel_size, "kernel_size")
    _check_int(stride, "stride")
    _check_int(padding, "padding", 0)
    if size + 2 * padding < kernel_size:
        raise ValueError(f"kernel_size {kernel_size} is larger than the padded input "
                         f"{size + 2 * padding}")
    return (size + 2 * padding - kernel_size) // stride + 1


def conv2d_manual(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int = 1, padding: int = 0) -> torch.Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) written out: one kernel slid over the image.

    For every kernel offset ``(i, j)`` take the strided window of the padded input that this offset
    sees at all output positions, and add ``weight[:, :, i, j]`` times it (a sum over input
    channels). The same weights serve every position: that is parameter sharing.

    Args:
        x: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in, kH, kW)``.
        bias: ``(C_out,)`` or ``None``.
        stride, padding: as in ``torch.nn.functional.conv2d`` (ints; zero padding).
    Returns:
        ``(N, C_out, H_out, W_out)`` with ``H_out = conv_output_size(H, kH, stride, padding)``.
    """
    _check_images(x)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        raise ValueError("weight must be a tensor of shape (C_out, C_in, kH, kW)")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} input channels but x has {x.shape[1]}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"bias must be None or a tensor of shape ({weight.shape[0]},)")
    c_out, _, kh, kw = weight.shape
    h_out = conv_output_size(x.shape[2], kh, stride, padding)
    w_out = conv_output_size(x.shape[3], kw, stride, padding)
    xp = F.pad(x, (padding, padding, padding, padding))
    out = x.new_zeros(x.shape[0], c_out, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i: i + stride * (h_out - 1) + 1: stride,
                        j: j + stride * (w_out - 1) + 1: stride]  # (N, C_in, H_out, W_out)
            out += torch.einsum("oc,nchw->nohw", weight[:, :, i, j], window)
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def max_pool2d_manual(x: torch.Tensor, kernel_size: int = 2, stride: int | None = None) -> torch.Tensor:
    """Max-pooling: the largest value of each ``kernel_size``² window, windows ``stride`` apart.

    ``x (N, C, H, W)`` → ``(N, C, H_out, W_out)``, ``H_out = (H − k) // stride + 1`` (no padding;
    ``stride`` defaults to ``kernel_size`` as in PyTorch).
    """
    _check_images(x)
    _check_int(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _check_int(stride, "stride")
    h_out = conv_output_size(x.shape[2], kernel_size, stride)
    w_out = conv_output_size(x.shape[3], kernel_size, stride)
    out = None
    for i in range(kernel_size):
        for j in range(kernel_size):
            window = x[:, :, i: i + stride * (h_out - 1) + 1: stride,
                       j: j + stride * (w_out - 1) + 1: stride]
            out = window if out is None else torch.maximum(out, window)
    return out.clone()


def conv2d_parameter_count(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> int:
    """Weights of a ``Conv2d``: ``out·in·k² (+ out biases)`` — independent of the image size."""
    _check_int(in_channels, "in_channels")
    _check_int(out_channels, "out_channels")
    _check_int(kernel_size, "kernel_size")
    return out_channels * in_channels * kernel_size ** 2 + (out_channels if bias else 0)


def dense_parameter_count(in_features: int, out_features: int, bias: bool = True) -> int:
    """Weights of a ``Linear`` layer: ``in·out (+ out biases)``.

    A dense layer computing the same map as a conv layer from a ``C_in×H×W`` input to a
    ``C_out×H'×W'`` output needs ``dense_parameter_count(C_in·H·W, C_out·H'·W')``.
    """
    _check_int(in_features, "in_features")
    _check_int(out_features, "out_features")
    return in_features * out_features + (out_features if bias else 0)


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Side length of the input patch one output unit sees, for stacked ``(kernel, stride)`` layers.

    Walking from the input: ``r ← r + (k − 1)·j`` and ``j ← j·s``, starting at ``r = 1, j = 1``
    (``j`` is the distance in input pixels between neighbouring units of the current layer).
    Conv 3x3 → pool 2x2 → conv 3x3: ``[(3, 1), (2, 2), (3, 1)]`` → 8.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of (kernel, stride) pairs, got {type(layers).__name__}")
    r, j = 1, 1
    for item in layers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"layers must hold (kernel, stride) pairs, got {item!r}")
        k, s = item
        _check_int(k, "kernel")
        _check_int(s, "stride")
        r += (k - 1) * j
        j *= s
    return r


def cnn_layer_specs(model: SmallCNN) -> list[tuple[int, int]]:
    """``(kernel, stride)`` of every conv and pool layer of ``model`` (for :func:`receptive_field`)."""
    if not isinstance(model, SmallCNN):
        raise TypeError(f"model must be a SmallCNN, got {type(model).__name__}")
    specs = []
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            specs.append((m.kernel_size[0], m.stride[0]))
        elif isinstance(m, nn.MaxPool2d):
            specs.append((int(m.kernel_size), int(m.stride)))
    return specs


def measured_receptive_field(model: SmallCNN, image_size: int | None = None) -> int:
    """Receptive field measured with gradients: how many input rows can change the centre unit of
    the last feature map. The layers' geometry (kernel, stride, padding) is kept; weights are set
    to ones and max-pooling to average pooling so that no path is hidden by a zero weight or an
    un-chosen max. Agrees with :func:`receptive_field` away from the border."""
    if not isinstance(model, SmallCNN):
        raise TypeError(f"model must be a SmallCNN, got {type(model).__name__}")
    size = image_size or 4 * model.config.image_size
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = x
    for block in model.features:
        conv, pool = block[0], block[2]
        out = F.conv2d(out, torch.ones_like(conv.weight[:1, :out.shape[1]], dtype=torch.float64),
                       stride=conv.stride, padding=conv.padding)
        out = F.avg_pool2d(out, pool.kernel_size, pool.stride)
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)


# --------------------------------------------------------------------------- kernels that are learned
#: The Sobel kernel for vertical edges (right minus left, smoothed over three rows).
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def learn_kernel(images: torch.Tensor, target_kernel: torch.Tensor, *, steps: int = 300,
                 lr: float = 0.1, seed: int = 0) -> dict:
    """Recover a known kernel from its outputs by gradient descent.

    The targets are ``F.conv2d(images, target_kernel, padding=k // 2)``. A single
    ``nn.Conv2d(1, 1, k, padding=k // 2, bias=False)``, initialised by PyTorch's default after
    ``torch.manual_seed(seed)`` (the global RNG is left as it was), is trained with full-batch Adam
    on the mean squared error for ``steps`` steps. The problem is linear least squares in the
    ``k²`` weights, so the loss can reach zero exactly at ``target_kernel``.

    Args:
        images: ``(N, 1, H, W)`` floating point.
        target_kernel: ``(k, k)`` or ``(1, 1, k, k)``, ``k`` odd.
        steps, lr: Adam steps and learning rate.
        seed: seed of the random initial kernel.

    Returns:
        ``{"kernel": (k, k), "initial": (k, k), "losses": [float] * steps}`` (``losses[t]`` is
        the loss before update ``t``).
    """
    _check_images(images)
    if images.shape[1] != 1:
        raise ValueError(f"images must have one channel, got {images.shape[1]}")
    if not isinstance(target_kernel, torch.Tensor):
        raise TypeError(f"target_kernel must be a torch.Tensor, got {type(target_kernel).__name__}")
    target_kernel = target_kernel.to(images.dtype)
    if target_kernel.ndim == 2:
        target_kernel = target_kernel[None, None]
    k = target_kernel.shape[-1]
    if target_kernel.shape != (1, 1, k, k) or k % 2 == 0:
        raise ValueError(f"target_kernel must be (k, k) or (1, 1, k, k) with k odd, "
                         f"got {tuple(target_kernel.shape)}")
    _check_int(steps, "steps")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    target = F.conv2d(images, target_kernel, padding=k // 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_check_int(seed, "seed", 0))
        conv = nn.Conv2d(1, 1, k, padding=k // 2, bias=False).to(images.dtype)
    initial = conv.weight.detach()[0, 0].clone()
    opt = torch.optim.Adam(conv.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(conv(images), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"kernel": conv.weight.detach()[0, 0].clone(), "initial": initial, "losses": losses}


def smooth_energy_fraction(weight: torch.Tensor) -> torch.Tensor:
    """How smooth each kernel is: the share of its energy that a plane can explain.

    Every ``k×k`` kernel is fitted (least squares) by ``a + b·column + c·row``: a constant and a
    linear ramp, the smoothest patterns a small kernel can hold (a blob of one sign, an oriented
    edge like Sobel's). The result is ``‖fit‖² / ‖kernel‖²``: 1 for a pure ramp or constant, 0
    for a pattern orthogonal to every plane (a zero-sum centre-surround such as the Laplacian). For
    kernels of independent random weights the expected value is ``3 / k²`` (a third for 3×3),
    whatever their scale.

    Args:
        weight: ``(..., k, k)``: a ``Conv2d`` weight ``(C_out, C_in, k, k)``, a stack of kernels
            ``(C, k, k)`` or one kernel ``(k, k)``.

    Returns:
        ``weight.shape[:-2]`` (a 0-d tensor for a single kernel), values in ``[0, 1]``.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim < 2 or weight.shape[-1] != weight.shape[-2] or weight.shape[-1] < 2:
        raise ValueError(f"weight must have shape (..., k, k) with k ≥ 2, got {tuple(weight.shape)}")
    k = weight.shape[-1]
    w = weight.detach().double().flatten(-2)                        # (..., k²)
    coords = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    basis = torch.stack([torch.ones(k * k, dtype=torch.float64), cols.flatten(), rows.flatten()])
    basis = basis / basis.norm(dim=1, keepdim=True)                 # orthonormal: centred coords
    fitted = (w @ basis.T).pow(2).sum(-1)                           # energy in the plane
    fraction = fitted / w.pow(2).sum(-1).clamp_min(1e-30)
    return fraction.to(weight.dtype) if weight.is_floating_point() else fraction.float()


# --------------------------------------------------------------------------- translation
def shift_images(x: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """Move images ``dx`` pixels right and ``dy`` pixels down (negative: left/up), filling with 0.

    ``x (N, C, H, W)`` → same shape; what leaves the frame is lost (not wrapped around).
    """
    _check_images(x)
    for v, name in ((dx, "dx"), (dy, "dy")):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    h, w = x.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx}, {dy}) must be smaller than the image ({h}x{w})")
    out = torch.zeros_like(x)
    out[..., max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        x[..., max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    return out


def accuracy_vs_shift(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      shifts: Sequence[int] = (0, 1, 2, 3)) -> dict[int, float]:
    """Test accuracy when every image is moved by ``s`` pixels, averaged over the four directions
    (right, left, down, up). ``{s: accuracy}``; ``s = 0`` is the plain accuracy."""
    _check_images(x)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    out = {}
    for s in shifts:
        _check_int(s, "shifts[i]", 0)
        moves = [(0, 0)] if s == 0 else [(s, 0), (-s, 0), (0, s), (0, -s)]
        out[s] = sum(accuracy(model, shift_images(x, dx, dy), y) for dx, dy in moves) / len(moves)
    return out


@torch.no_grad()
def representation_change(model: SmallCNN, x: torch.Tensor, shift: int = 1) -> dict[str, float]:
    """How much each representation changes when the input moves ``shift`` pixels to the right.

    For the input, every conv-stack map (``conv1``, ``relu1``, ``pool1``…) and the global average
    pool of the last map (``global pool``): mean over images of ``‖f(shifted) − f(x)‖ / ‖f(x)‖``
    (no re-alignment). Also ``conv1 (re-aligned)``: the same for conv1 after shifting its map back,
    measured away from the border: ≈ 0 because convolution is equivariant.
    """
    if not isinstance(model, SmallCNN):
        raise TypeError(f"model must be a SmallCNN, got {type(model).__name__}")
    _check_images(x)
    _check_int(shift, "shift")
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    xs = shift_images(x, dx=shift)

    def rel(a, b):
        a, b = a.flatten(1), b.flatten(1)
        return float(((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-8)).mean())

    out = {"input": rel(xs, x)}
    maps, maps_s = model.feature_maps(x), model.feature_maps(xs)
    for (name, a), (_, b) in zip(maps_s, maps):
        out[name] = rel(a, b)
    k = model.config.kernel_size // 2 + 1
    c, cs = maps[0][1], maps_s[0][1]
    aligned = shift_images(c, dx=shift)
    out["conv1 (re-aligned)"] = rel(cs[..., k:-k, shift + k:-k], aligned[..., k:-k, shift + k:-k])
    out["global pool"] = rel(maps_s[-1][1].mean((2, 3)), maps[-1][1].mean((2, 3)))
    return out


def place_on_canvas(x: torch.Tensor, width: int, left: int) -> torch.Tensor:
    """Paste images onto a wider blank canvas: ``(N, C, H, W)`` → ``(N, C, H, width)``, the image
    occupying columns ``left .. left + W − 1``."""
    _check_images(x)
    _check_int(left, "left", 0)
    if not isinstance(width, int) or left + x.shape[-1] > width:
        raise ValueError(f"width must be an int ≥ left + W = {left + x.shape[-1]}, got {width!r}")
    out = x.new_zeros(*x.shape[:-1], width)
    out[..., left: left + x.shape[-1]] = x
    return out


def position_probe_accuracy(model: SmallCNN, x: torch.Tensor, *, margin: int = 0,
                            seed: int = 0) -> dict[str, float]:
    """Where is the object? Ask a linear probe, once from the feature map, once from its global pool.

    Every image is pasted onto a wider blank canvas at a left or a right position (label 0 / 1):
    ``margin`` blank columns, then the two positions ``shift`` apart (``shift`` = the image width
    rounded up to a multiple of the network's total pooling stride, so the right-hand feature map
    is exactly the left-hand one moved by whole cells), then ``margin`` blank columns. The conv
    stack runs on the whole canvas (it works at any size). Logistic regression is fitted on half of
    the images (both placements) and scored on the other half, from (a) the flattened last
    feature map — a grid that keeps *where* — and (b) its global average — *what* only.

    With ``margin = 0`` the object touches the canvas border, and zero padding lets the network
    notice which border it is at; with a margin wider than the receptive field, it cannot.

    Returns ``{"feature map": acc, "global pool": acc}``; chance is 0.5.
    """
    from sklearn.linear_model import LogisticRegression

    if not isinstance(model, SmallCNN):
        raise TypeError(f"model must be a SmallCNN, got {type(model).__name__}")
    _check_images(x)
    _check_int(margin, "margin", 0)
    w = x.shape[-1]
    stride = 2 ** len(model.config.channels)
    shift = -(-w // stride) * stride
    width = 2 * margin + shift + w
    device = next(model.parameters()).device
    canvas = torch.cat([place_on_canvas(x, width, margin),
                        place_on_canvas(x, width, margin + shift)]).to(device)
    side = torch.cat([torch.zeros(len(x)), torch.ones(len(x))]).long()
    with torch.no_grad():
        fmap = model.eval().features(canvas).cpu().double()
    # split by image: both placements of an image land in the same half (balanced 50 / 50)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    half = order[: len(x) // 2], order[len(x) // 2:]
    train, test = (torch.cat([h, h + len(x)]) for h in half)
    out = {}
    for name, feats in (("feature map", fmap.flatten(1)), ("global pool", fmap.mean((2, 3)))):
        probe = LogisticRegression(max_iter=2000).fit(feats[train].numpy(), side[train].numpy())
        out[name] = float(probe.score(feats[test].numpy(), side[test].numpy()))
    return out


# --------------------------------------------------------------------------- transfer learning
def class_subset(data: ImageData, classes: Sequence[int]) -> ImageData:
    """Only the images of ``classes``, relabelled ``0..len(classes)-1`` in the given order."""
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes) or any(
            not isinstance(c, int) or not 0 <= c < len(data.classes) for c in classes):
        raise ValueError(f"classes must be distinct class indices in [0, {len(data.classes)}), "
                         f"got {classes!r}")
    lookup = torch.full((len(data.classes),), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def pick(x, y):
        keep = lookup[y] >= 0
        return x[keep], lookup[y[keep]]

    tx, ty = pick(data.train_x, data.train_y)
    vx, vy = pick(data.test_x, data.test_y)
    return ImageData(tx, ty, vx, vy, tuple(data.classes[c] for c in classes))


def few_shot(data: ImageData, shots_per_class: int, *, seed: int = 0) -> ImageData:
    """Keep only ``shots_per_class`` random training images of each class (test set unchanged)."""
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    _check_int(shots_per_class, "shots_per_class")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(len(data.classes)):
        idx = (data.train_y == c).nonzero().flatten()
        if len(idx) < shots_per_class:
            raise ValueError(f"class {c} has only {len(idx)} training images, "
                             f"fewer than shots_per_class={shots_per_class}")
        keep.append(idx[torch.randperm(len(idx), generator=g)[:shots_per_class]])
    keep = torch.cat(keep)
    return data._replace(train_x=data.train_x[keep], train_y=data.train_y[keep])


PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def pretrained_on_classes(cfg, dataset: str = "digits", classes: Sequence[int] = PRETRAIN_CLASSES,
                          *, verbose: bool = True) -> tuple[SmallCNN, dict]:
    """The chapter's CNN trained only on ``classes`` of ``dataset`` (cached like
    :func:`trained_classifier`); its head has ``len(classes)`` outputs."""
    _check_cfg(cfg)
    _check_dataset(dataset)
    data = class_subset(load_images(dataset, cfg), classes)
    arch = cnn_config_for(dataset, num_classes=len(data.classes))
    recipe = recipe_for(dataset, cfg)
    config = {"arch": asdict(arch), "recipe": asdict(recipe), "classes": list(classes),
              "train_size": len(data.train_y), "version": 2}
    return load_or_train(f"cnn-{dataset}-pretrain", cfg, config,
                         lambda: build_cnn(arch, seed=cfg.seed),
                         lambda m: fit_classifier(m, data, recipe, device=cfg.device,
                                                  desc=f"pretraining on {list(classes)}"),
                         verbose=verbose)


ADAPT_METHODS = ("transfer learning", "fine-tuning", "from scratch")
#: Learning rate of the new output layer (fine-tuning moves the pretrained layers at a tenth of it).
ADAPT_LR = 3e-3


def adaptation_setup(pretrained: SmallCNN, num_classes: int, method: str, *, lr: float = ADAPT_LR,
                     seed: int = 0) -> tuple[SmallCNN, list[dict]]:
    """The model to train and the optimizer's parameter groups for one way of adapting
    ``pretrained`` to ``num_classes`` new classes (nothing is trained here).

    - ``"transfer learning"``: a copy of ``pretrained`` with a new output layer; every other
      parameter is frozen (``requires_grad`` off), one group: the new layer at ``lr``;
    - ``"fine-tuning"``: a copy with a new output layer, nothing frozen; two groups: the new layer
      at ``lr``, every pretrained parameter at ``lr / 10`` so the pretrained layers move gently;
    - ``"from scratch"``: a freshly initialised CNN of the same shape, one group at ``lr``.

    ``pretrained`` itself is never modified. The new output layer (and the scratch CNN) are
    initialised from ``seed + 1``, leaving the global RNG as it was.

    Returns:
        ``(model, groups)``: ``torch.optim.Adam(groups)`` trains exactly the parameters of the
        method (those with ``requires_grad``).
    """
    import copy

    if method not in ADAPT_METHODS:
        raise ValueError(f"method must be one of {ADAPT_METHODS}, got {method!r}")
    if not isinstance(pretrained, SmallCNN):
        raise TypeError(f"pretrained must be a SmallCNN, got {type(pretrained).__name__}")
    _check_int(num_classes, "num_classes", 2)
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    arch = CNNConfig(**{**asdict(pretrained.config), "num_classes": num_classes})
    if method == "from scratch":
        model = build_cnn(arch, seed=seed + 1).to(next(pretrained.parameters()).device)
        return model, [{"params": list(model.parameters()), "lr": lr}]
    model = copy.deepcopy(pretrained)
    model.config = arch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model.head[-1] = nn.Linear(model.head[-1].in_features, num_classes)
    model.to(next(pretrained.parameters()).device)
    new_layer = list(model.head[-1].parameters())
    backbone = [p for p in model.parameters() if all(p is not q for q in new_layer)]
    if method == "transfer learning":
        for p in backbone:
            p.requires_grad_(False)
        return model, [{"params": new_layer, "lr": lr}]
    return model, [{"params": new_layer, "lr": lr}, {"params": backbone, "lr": lr / 10}]


def adapt_few_shot(pretrained: SmallCNN, data: ImageData, method: str, *, steps: int = 300,
                   lr: float = ADAPT_LR, seed: int = 0, device=None) -> dict:
    """Adapt a CNN pretrained on other classes to the classes of ``data``, one of three ways
    (:data:`ADAPT_METHODS`, set up by :func:`adaptation_setup`: what is frozen, which learning
    rate each parameter group gets), then train it with Adam + cross-entropy for ``steps`` steps.

    Returns ``{"method", "test_accuracy", "trainable_parameters", "seconds", "model"}``.
    """
    if method not in ADAPT_METHODS:
        raise ValueError(f"method must be one of {ADAPT_METHODS}, got {method!r}")
    if not isinstance(pretrained, SmallCNN):
        raise TypeError(f"pretrained must be a SmallCNN, got {type(pretrained).__name__}")
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    _check_int(steps, "steps")
    model, groups = adaptation_setup(pretrained, len(data.classes), method, lr=lr, seed=seed)
    device = device or next(pretrained.parameters()).device
    model.to(device)
    opt = torch.optim.Adam(groups)
    gen = torch.Generator().manual_seed(seed)
    batches = infinite_batches(data.train_x, data.train_y, batch_size=min(64, len(data.train_y)),
                               generator=gen, device=device)

    def loss_fn(m, batch):
        x, y = batch
        return F.cross_entropy(m(x), y)

    hist = train_loop(model, opt, batches, loss_fn, steps, desc=method, progress=False)
    model.eval()
    return {"method": method, "test_accuracy": accuracy(model, data.test_x, data.test_y),
            "trainable_parameters": count_parameters(model, trainable_only=True),
            "seconds": round(hist.seconds, 2), "model": model}


def compare_adaptation(cfg, dataset: str = "digits", *, shots_per_class: int = 10,
                       steps: int = 300, seeds: Sequence[int] = (0, 1, 2),
                       progress: bool = True) -> list[dict]:
    """Pretrain on classes 0–4, then learn classes 5–9 from ``shots_per_class`` labelled images
    each, three ways (:data:`ADAPT_METHODS`), repeated for every seed (a different few-shot draw).

    Returns one row per method: ``method``, ``test_accuracy`` (mean over seeds),
    ``accuracy_std``, ``trainable_parameters``, ``seconds`` (mean training time).
    """
    from tqdm.auto import tqdm

    from genai_lab.config import show_progress

    if not seeds:
        raise ValueError("seeds must not be empty")
    pretrained, _ = pretrained_on_classes(cfg, dataset, verbose=False)
    target = class_subset(load_images(dataset, cfg), TARGET_CLASSES)
    runs: dict[str, list[dict]] = {m: [] for m in ADAPT_METHODS}
    jobs = [(s, m) for s in seeds for m in ADAPT_METHODS]
    for seed, method in tqdm(jobs, desc="adapting", disable=not (progress and show_progress()), leave=False):
        small = few_shot(target, shots_per_class, seed=seed)
        r = adapt_few_shot(pretrained, small, method, steps=steps, seed=seed, device=cfg.device)
        runs[method].append(r)
    rows = []
    for method, rs in runs.items():
        accs = torch.tensor([r["test_accuracy"] for r in rs])
        rows.append({"method": method, "test_accuracy": float(accs.mean()),
                     "accuracy_std": float(accs.std()) if len(accs) > 1 else 0.0,
                     "trainable_parameters": rs[0]["trainable_parameters"],
                     "seconds": round(sum(r["seconds"] for r in rs) / len(rs), 2)})
    return rows


# --------------------------------------------------------------------------- bench
@register("cnn", "small CNN vs MLP (digits / Fashion-MNIST), shift robustness, few-shot transfer")
def bench_cnn(cfg) -> list[Metric]:
    """The chapter's reference experiment at ``cfg``'s profile."""
    dataset = cfg.pick(smoke="digits", cpu="fashion_mnist", gpu="fashion_mnist")
    cnn, cnn_meta = trained_classifier(cfg, dataset, verbose=False)
    mlp, mlp_meta = trained_mlp(cfg, dataset, verbose=False)
    data = load_images(dataset, cfg)
    shift = 1 if dataset == "digits" else 2  # 1 px of 8 is as far as 3-4 px of 28
    shifted = {name: accuracy_vs_shift(m, data.test_x, data.test_y, shifts=(shift,))[shift]
               for name, m in (("cnn", cnn), ("mlp", mlp))}
    rows = compare_adaptation(cfg, "digits", shots_per_class=10,
                              steps=cfg.pick(smoke=200, cpu=300, gpu=300), seeds=(0, 1, 2),
                              progress=False)
    acc = {r["method"]: r["test_accuracy"] for r in rows}
    return [
        Metric(f"cnn_test_accuracy_{dataset}", cnn_meta["metrics"]["test_accuracy"],
               bar=cfg.pick(smoke=0.97, cpu=0.91, gpu=0.91)),
        Metric(f"cnn_train_seconds_{dataset}", cnn_meta["seconds"], higher_is_better=False,
               bar=cfg.pick(smoke=None, cpu=300.0, gpu=300.0), unit="s"),
        Metric(f"mlp_test_accuracy_{dataset}", mlp_meta["metrics"]["test_accuracy"]),
        Metric("cnn_parameters", count_parameters(cnn)),
        Metric("mlp_parameters", count_parameters(mlp)),
        Metric(f"cnn_accuracy_shift{shift}px", shifted["cnn"]),
        Metric(f"mlp_accuracy_shift{shift}px", shifted["mlp"]),
        Metric("fewshot_transfer_accuracy", acc["transfer learning"]),
        Metric("fewshot_finetune_accuracy", acc["fine-tuning"]),
        Metric("fewshot_scratch_accuracy", acc["from scratch"]),
    ]
