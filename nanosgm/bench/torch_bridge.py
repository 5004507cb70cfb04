"""The one translation of a nanosgm network into PyTorch: ``to_torch(model, in_shape)``.

Used by the bench (``python -m nanosgm.bench --compare-torch`` times the same network in torch), by the
torch oracle tests (tests/layers/test_torch_oracle.py compares values and gradients) and by the accuracy
reference (tests/torch_reference.py). Teach a new layer here, once: add a rule to :func:`torch_modules`
and, if it has parameters or buffers, its entries to :func:`counterparts`.

    net = to_torch(model, (1, 28, 28))                 # torch.nn.Sequential, same weights, same dtype
    for layer, slot, tensor in counterparts(net):      # each nanosgm array beside its torch tensor
        np.testing.assert_allclose(layer_array(layer, slot), as_nanosgm(layer, slot, tensor))

torch is imported lazily, inside the functions only: ``import nanosgm`` never needs it (torch is a test
and benchmark oracle, never part of nanosgm's computation).
"""
from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import backend
from ..layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Layer, MaxPool2D, ReLU, Sequential

if TYPE_CHECKING:
    import torch

    from ..layers.base import Array

__all__ = ["TorchMissing", "import_torch", "to_torch", "torch_modules", "counterparts", "as_nanosgm",
           "layer_array"]


class TorchMissing(RuntimeError):
    """torch is needed (a comparison with PyTorch was asked for) but cannot be imported."""


def import_torch(what: str = "this comparison") -> ModuleType:
    """torch, imported on demand; a TorchMissing error that says what to do when it is not installed."""
    try:
        import torch
    except ImportError as exc:
        raise TorchMissing(f"{what} needs PyTorch, which cannot be imported here ({exc}). "
                           "Install it (CPU build: `pip install torch --index-url https://download.pytorch.org/whl/cpu`, "
                           "or `pip install -e .[test]`).") from exc
    return torch


def _mask_dropout(nn: ModuleType, layer: Dropout) -> torch.nn.Module:
    """A torch module that, in training mode, multiplies by the mask nanosgm's ``layer`` drew last
    (so both frameworks drop the same units); the identity in eval mode."""
    import torch

    class NanosgmMaskDropout(torch.nn.Module):        # torch.nn is the ``nn`` torch_modules passes
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or layer.p == 0.0:
                return x
            if layer.mask is None or tuple(layer.mask.shape) != tuple(x.shape):
                raise RuntimeError(f"{layer!r} has no mask of shape {tuple(x.shape)}: run the nanosgm forward "
                                   "(training=True) first, it draws the mask that torch reuses")
            return x * torch.as_tensor(np.asarray(backend.to_host(layer.mask)), device=x.device)

    return NanosgmMaskDropout()


def torch_modules(layer: Layer, nn: ModuleType, in_rank: int, nanosgm_masks: bool = False) -> list:
    """The torch.nn modules (a list) equivalent to one nanosgm layer whose input has ``in_rank`` dims."""
    if isinstance(layer, Dense):
        return [nn.Linear(layer.in_features, layer.out_features, bias="b" in layer.params)]
    if isinstance(layer, Conv2D):
        return [nn.Conv2d(layer.in_channels, layer.out_channels, (layer.kh, layer.kw), stride=layer.stride,
                          padding=layer.padding, bias="b" in layer.params)]
    if isinstance(layer, MaxPool2D):
        return [nn.MaxPool2d(layer.k, layer.stride)]
    if isinstance(layer, BatchNorm):
        if in_rank not in (2, 4):
            raise ValueError(f"{layer!r} sees {in_rank}-D inputs; only 2-D (BatchNorm1d) and 4-D (BatchNorm2d) translate")
        cls = nn.BatchNorm2d if in_rank == 4 else nn.BatchNorm1d
        return [cls(layer.num_features, eps=layer.eps, momentum=layer.momentum)]
    if isinstance(layer, ReLU):
        return [nn.ReLU()]
    if isinstance(layer, Dropout):
        return [_mask_dropout(nn, layer) if nanosgm_masks else nn.Dropout(layer.p)]
    if isinstance(layer, Flatten):
        return [nn.Flatten()]
    if isinstance(layer, GlobalAvgPool2D):
        return [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    raise TypeError(f"nanosgm.bench.torch_bridge cannot translate {layer!r} ({type(layer).__name__}) to torch; "
                    "add a rule to nanosgm.bench.torch_bridge.torch_modules")


def _flat_layers(model: Layer) -> Iterator[Layer]:
    """The leaf layers of ``model``, nested Sequentials flattened, in order."""
    if isinstance(model, Sequential):
        for sub in model.layers:
            yield from _flat_layers(sub)
    else:
        yield model


def _param_dtype(model: Layer) -> np.dtype:
    for layer in _flat_layers(model):
        for p in layer.params.values():
            return np.dtype(p.dtype)
    return np.dtype(np.float32)


def _input_ranks(layers: list[Layer], in_shape: tuple[int, ...], dtype: np.dtype) -> list[int]:
    """[rank of each layer's input], from a one-sample inference forward (zeros) through the layers.

    Inference mode changes neither parameters, BatchNorm statistics nor dropout masks (it only refreshes
    the caches that the next forward overwrites anyway)."""
    x = backend.xp().zeros((1,) + tuple(in_shape), dtype=dtype)
    ranks = []
    for layer in layers:
        ranks.append(x.ndim)
        x = layer.forward(x, training=False)
    return ranks


# nanosgm slot -> torch attribute of the layer's first module; Dense's W is (in, out), Linear's (out, in)
_SLOTS = {Dense: {"W": "weight", "b": "bias"}, Conv2D: {"W": "weight", "b": "bias"},
          BatchNorm: {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}}


def counterparts(net: torch.nn.Sequential) -> list[tuple[Layer, str, torch.Tensor]]:
    """[(nanosgm layer, slot, torch tensor)] for every parameter and buffer of a net built by
    :func:`to_torch`: the slot is the nanosgm name ("W", "b", "gamma", "beta", "running_mean",
    "running_var"), the tensor its torch counterpart (convert with :func:`as_nanosgm`)."""
    out: list[tuple[Layer, str, torch.Tensor]] = []
    pairs = cast("list[tuple[Layer, torch.nn.Module]]", net.nanosgm_pairs)       # set by to_torch
    for layer, module in pairs:
        for cls, slots in _SLOTS.items():
            if isinstance(layer, cls):
                out += [(layer, slot, getattr(module, attr)) for slot, attr in slots.items()
                        if slot in layer.params or slot in layer.buffers]
    return out


def layer_array(layer: Layer, slot: str) -> Array:
    """The nanosgm parameter or buffer ``slot`` of ``layer``."""
    return layer.params[slot] if slot in layer.params else layer.buffers[slot]


def as_nanosgm(layer: Layer, slot: str, tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor (a counterpart, or its .grad) as a host NumPy array in nanosgm's layout."""
    a = tensor.detach().cpu().numpy()
    return a.T if isinstance(layer, Dense) and slot == "W" else a


def _copy_weights(net: torch.nn.Sequential, torch: ModuleType) -> None:
    with torch.no_grad():
        for layer, slot, tensor in counterparts(net):
            host = np.ascontiguousarray(backend.to_host(layer_array(layer, slot)))
            value = torch.from_numpy(host)
            tensor.copy_(value.T if isinstance(layer, Dense) and slot == "W" else value)


def to_torch(model: Layer, in_shape: tuple[int, ...], *, device: str = "cpu", copy_weights: bool = True, dtype=None,
             nanosgm_masks: bool = False) -> torch.nn.Sequential:
    """A ``torch.nn.Sequential`` with the same architecture as the nanosgm ``model``, layer by layer:
    Conv2D -> Conv2d (same stride/padding), Dense -> Linear, MaxPool2D -> MaxPool2d, BatchNorm ->
    BatchNorm1d/2d by the rank of its input (found by pushing one sample of shape ``in_shape``
    through the model), ReLU, Dropout, Flatten, GlobalAvgPool2D -> AdaptiveAvgPool2d(1) + Flatten.
    Nested Sequentials are flattened; an unknown layer type is a TypeError.

    With ``copy_weights`` the parameters and BatchNorm running statistics are copied, so both compute
    the same function. ``dtype`` (default: the nanosgm parameters' dtype, float32 when there are none)
    and ``device`` are the torch model's. ``nanosgm_masks=True`` makes each Dropout reuse the mask the
    nanosgm layer drew in its last training forward (run that first), for exact comparisons.
    ``net.nanosgm_pairs`` lists (nanosgm layer, its first torch module); see :func:`counterparts`.
    Finding the ranks runs one inference forward pass through ``model``, which replaces its layers' caches:
    build the torch model before the nanosgm passes whose caches a backward (or backward_dot) will read.
    """
    torch = import_torch("nanosgm.bench.torch_bridge.to_torch")
    nn = torch.nn
    layers = list(_flat_layers(model))
    dtype = _param_dtype(model) if dtype is None else np.dtype(dtype)
    ranks = _input_ranks(layers, in_shape, dtype)
    groups = [torch_modules(layer, nn, rank, nanosgm_masks) for layer, rank in zip(layers, ranks)]
    net = nn.Sequential(*[m for group in groups for m in group]).to(getattr(torch, dtype.name))
    net.nanosgm_pairs = [(layer, group[0]) for layer, group in zip(layers, groups)]
    if copy_weights:
        _copy_weights(net, torch)
    return net.to(device)
