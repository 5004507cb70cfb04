"""Sequential: a network as a list of layers, run forwards then backwards to the inputs (Eq. 14).

    >>> import numpy as np
    >>> from nanosgm.layers import BatchNorm, Conv2D, Dense, Flatten, ReLU, Sequential, SoftmaxCrossEntropy
    >>> model = Sequential([Conv2D(1, 4, 5), BatchNorm(4), ReLU(), Flatten(), Dense(4 * 24 * 24, 10)])
    >>> x = np.random.default_rng(0).uniform(0, 1, (8, 1, 28, 28)).astype(np.float32)
    >>> loss = SoftmaxCrossEntropy()
    >>> logits = model.forward(x, training=True)
    >>> E = loss.forward(logits, np.arange(8))
    >>> dX = model.backward(loss.backward())      # dE/dX, the residual gradient at the inputs
    >>> logits.shape, dX.shape
    ((8, 10), (8, 1, 28, 28))
    >>> [name for name, param, grad in model.parameters()]
    ['0.W', '0.b', '1.gamma', '1.beta', '4.W', '4.b']
    >>> import os, tempfile
    >>> copy = Sequential([Conv2D(1, 4, 5), BatchNorm(4), ReLU(), Flatten(), Dense(4 * 24 * 24, 10)])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     model.save(os.path.join(folder, "model.npz"))
    ...     copy.load(os.path.join(folder, "model.npz"))
    >>> bool(np.array_equal(copy.forward(x, training=False), model.forward(x, training=False)))
    True

Saving writes a ``.npz`` atomically (temporary file + rename); loading uses ``allow_pickle=False``,
so a checkpoint can never execute code, and checks every name, shape, dtype and value before touching
the model (nanosgm/plumbing/state.py): a refused load leaves the model as it was.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .. import backend
from ..plumbing.npz import load_npz, save_npz_atomic
from ..plumbing.state import CheckedState, check_array, check_keys
from .base import Array, Layer


class Sequential(Layer, CheckedState):
    """Layers applied in order. ``.layers`` is the list it was given.

    ``state_dict()`` / ``load_state_dict(state, source=, prefix=)``: every parameter and buffer, loaded
    all or nothing (:class:`~nanosgm.plumbing.state.CheckedState`)."""

    def __init__(self, layers: list) -> None:
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
                raise TypeError(f"layer {i} ({layer!r}) has no forward/backward; Sequential takes layers only")

    def __repr__(self) -> str:
        body = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{body}\n)  # {self.num_params():,} parameters"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def forward(self, x: Array, training: bool = True) -> Array:
        backend.check_same_backend(x, (p for layer in self.layers for p in layer.params.values()), "Sequential")
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy: Array, param_grads: bool = True, keep: bool = False) -> Array:
        """Backpropagate through every layer; returns dE/dX at the network's inputs (Eq. 14).

        ``param_grads=False`` computes dE/dX only, skipping the weight gradients (and leaving the
        layers' ``grads`` as they were): what an attack needs, at a fraction of the cost.
        ``keep=True`` also keeps the gradient that reached each layer, for :meth:`backward_dot`.
        """
        dys: list[Array | None] = [None] * len(self.layers)
        try:
            for layer in self.layers:
                layer.param_grads = param_grads
            for i in reversed(range(len(self.layers))):
                dys[i] = dy if keep else None
                dy = self.layers[i].backward(dy)
        finally:
            for layer in self.layers:
                layer.param_grads = True
        self._dys = dys if keep else None
        return dy

    def forward_dot(self, x_dot: Array) -> Array:
        """R{logits}: the forward pass's derivative along the input direction ``x_dot`` (after forward)."""
        for layer in self.layers:
            x_dot = layer.forward_dot(x_dot)
        return x_dot

    # A network keeps each layer's dy itself (backward(keep=True)), so it takes only dy_dot, unlike a layer
    def backward_dot(self, dy_dot: Array) -> Array:  # type: ignore[override]
        """R{dE/dX} along the direction of :meth:`forward_dot`, from ``dy_dot`` = R{dE/dlogits}; fills every
        layer's ``grads_dot`` = R{dE/dparam} (double backpropagation). Needs ``backward(..., keep=True)``."""
        dys = getattr(self, "_dys", None)
        if dys is None:
            raise RuntimeError("Sequential.backward_dot() needs a backward(dy, keep=True) pass before it")
        for i in reversed(range(len(self.layers))):
            dy_dot = self.layers[i].backward_dot(dys[i], dy_dot)
        return dy_dot

    def parameters(self) -> Iterator[tuple[str, Array, Array | None]]:
        """Yield (name, param, grad) for every learnable array; ``grad`` is None before a backward pass."""
        for i, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                yield f"{i}.{key}", p, layer.grads.get(key)

    def parameters_dot(self) -> Iterator[tuple[str, Array, Array | None]]:
        """Yield (name, param, grad_dot) for every learnable array after :meth:`backward_dot`."""
        for i, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                yield f"{i}.{key}", p, layer.grads_dot.get(key)

    def bind_parameters(self, arrays: dict[str, Array]) -> None:
        """Make each parameter named in ``arrays`` (as :meth:`parameters` names them) that array, which must
        have its shape and dtype and hold its values: how an optimizer on a GPU makes every parameter a view
        of one flat buffer (nanosgm/optim/flat.py)."""
        for name, a in arrays.items():
            index, _, key = name.partition(".")
            params = self.layers[int(index)].params
            if tuple(a.shape) != tuple(params[key].shape) or a.dtype != params[key].dtype:
                raise ValueError(f"parameter {name!r} is {params[key].dtype} {tuple(params[key].shape)}, "
                                 f"it cannot be bound to a {a.dtype} {tuple(a.shape)} array")
            params[key] = a

    def num_params(self) -> int:
        return int(sum(p.size for _, p, _ in self.parameters()))

    # --- state ----------------------------------------------------------------------------------
    def _arrays(self) -> Iterator[tuple[str, Layer, str, Array]]:
        for i, layer in enumerate(self.layers):
            for key, a in list(layer.params.items()) + list(layer.buffers.items()):
                yield f"{i}.{key}", layer, key, a

    def state_dict(self) -> dict:
        """Every parameter and buffer as host NumPy arrays (copies), keyed "<layer index>.<name>"."""
        return {name: np.array(backend.to_host(a)) for name, _, _, a in self._arrays()}

    def _checked_state(self, state, where) -> dict:
        """For :meth:`load_state_dict` (nanosgm/plumbing/state.py): every name present (and no other),
        with the model's shape, a floating dtype where the model's array is floating, and finite values."""
        expected = {name: a for name, _, _, a in self._arrays()}
        check_keys(state, expected, where, what="the model's state")
        return {name: check_array(state, name, where, shape=a.shape, kind="f" if a.dtype.kind == "f" else None)
                for name, a in expected.items()}

    def _assign_state(self, checked) -> None:
        """Copy the checked arrays into the model's own arrays, in place."""
        for name, _, _, a in self._arrays():
            a[...] = backend.array_module(a).asarray(checked[name], dtype=a.dtype)

    def save(self, path) -> None:
        """Write the state dict to ``path`` (.npz) atomically."""
        save_npz_atomic(path, self.state_dict())

    def load(self, path) -> None:
        """Load a ``.npz`` written by :meth:`save` (never unpickles); StateError if it does not fit, model unchanged."""
        self.load_state_dict(load_npz(path), source=os.fspath(path))
