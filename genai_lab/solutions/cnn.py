"""Reference solutions of `labs/01_cnn_lab.ipynb`: Lab 1. Convolution by hand.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.cnn`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch
import torch.nn.functional as F


def output_size(size, kernel_size, stride=1, padding=0):
    """Number of kernel positions along one axis (an int)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) like F.conv2d: (N, C_in, H, W) -> (N, C_out, H_out, W_out)."""
    c_out, _, kh, kw = weight.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    h_out = (x.shape[2] + 2 * padding - kh) // stride + 1
    w_out = (x.shape[3] + 2 * padding - kw) // stride + 1
    out = x.new_zeros(x.shape[0], c_out, h_out, w_out)
    for u in range(kh):
        for v in range(kw):
            window = xp[:, :, u: u + stride * (h_out - 1) + 1: stride,
                        v: v + stride * (w_out - 1) + 1: stride]
            out += torch.einsum("oc,nchw->nohw", weight[:, :, u, v], window)
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def max_pool2d(x, kernel_size=2, stride=None):
    """Max over each kernel_size x kernel_size window, windows `stride` apart (default: kernel_size)."""
    stride = stride or kernel_size
    h_out = (x.shape[2] - kernel_size) // stride + 1
    w_out = (x.shape[3] - kernel_size) // stride + 1
    out = None
    for u in range(kernel_size):
        for v in range(kernel_size):
            window = x[:, :, u: u + stride * (h_out - 1) + 1: stride,
                       v: v + stride * (w_out - 1) + 1: stride]
            out = window if out is None else torch.maximum(out, window)
    return out


def conv_params(in_channels, out_channels, kernel_size):
    """Weights + biases of nn.Conv2d(in_channels, out_channels, kernel_size)."""
    return out_channels * in_channels * kernel_size * kernel_size + out_channels


def dense_params(in_features, out_features):
    """Weights + biases of nn.Linear(in_features, out_features)."""
    return in_features * out_features + out_features


def receptive_field(layers):
    """Side of the input patch seen by one unit after the (kernel, stride) layers."""
    r, j = 1, 1
    for k, s in layers:
        r += (k - 1) * j
        j *= s
    return r


def freeze_for_transfer(model, new_layer):
    """Freeze every parameter of ``model`` except ``new_layer``'s; return the parameters to train."""
    new = list(new_layer.parameters())
    for p in model.parameters():
        p.requires_grad = any(p is q for q in new)
    return new


def fine_tuning_groups(model, new_layer, lr):
    """Optimizer groups: ``new_layer`` at ``lr``, every other parameter at ``lr / 10``; none frozen."""
    new = list(new_layer.parameters())
    pretrained = [p for p in model.parameters() if all(p is not q for q in new)]
    for p in model.parameters():
        p.requires_grad = True
    return [{"params": new, "lr": lr}, {"params": pretrained, "lr": lr / 10}]
