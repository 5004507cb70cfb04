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
the model (nanosgm/state.py): a refused load leaves the model as it was.
"""
from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib

import numpy as np

from .. import backend
from ..files import atomic_write
from ..state import StateError, Where, check_array, check_keys
from .base import Layer


class Sequential(Layer):
    """Layers applied in order. ``.layers`` is the list it was given."""

    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
                raise TypeError(f"layer {i} ({layer!r}) has no forward/backward; Sequential takes layers only")

    def __repr__(self):
        body = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{body}\n)  # {self.num_params():,} parameters"

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x, training=True):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy, param_grads: bool = True):
        """Backpropagate through every layer; returns dE/dX at the network's inputs (Eq. 14).

        ``param_grads=False`` computes dE/dX only, skipping the weight gradients (and leaving the
        layers' ``grads`` as they were): what an attack needs, at a fraction of the cost.
        """
        try:
            for layer in self.layers:
                layer.param_grads = param_grads
            for layer in reversed(self.layers):
                dy = layer.backward(dy)
        finally:
            for layer in self.layers:
                layer.param_grads = True
        return dy

    def parameters(self):
        """Yield (name, param, grad) for every learnable array; ``grad`` is None before a backward pass."""
        for i, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                yield f"{i}.{key}", p, layer.grads.get(key)

    def num_params(self) -> int:
        return int(sum(p.size for _, p, _ in self.parameters()))

    # --- state ----------------------------------------------------------------------------------
    def _arrays(self):
        for i, layer in enumerate(self.layers):
            for key, a in list(layer.params.items()) + list(layer.buffers.items()):
                yield f"{i}.{key}", layer, key, a

    def state_dict(self) -> dict:
        """Every parameter and buffer as host NumPy arrays (copies), keyed "<layer index>.<name>"."""
        return {name: np.array(backend.to_host(a)) for name, _, _, a in self._arrays()}

    def load_state_dict(self, state: dict, *, source=None, prefix: str = "") -> None:
        """Copy arrays into the model in place, all or nothing.

        Every name must be present (and no other), with the model's shape, a floating dtype and finite
        values; otherwise a :class:`nanosgm.state.StateError` naming ``source`` (the file, when known)
        and the key as spelled there (``prefix`` + name), and the model is left unchanged.
        """
        checked = self._checked_state(state, Where(source, prefix))     # everything, before changing anything
        for name, _, _, a in self._arrays():
            a[...] = backend.array_module(a).asarray(checked[name], dtype=a.dtype)

    def check_state_dict(self, state: dict, *, source=None, prefix: str = "") -> None:
        """Raise the StateError :meth:`load_state_dict` would raise, changing nothing."""
        self._checked_state(state, Where(source, prefix))

    def _checked_state(self, state, where) -> dict:
        expected = {name: a for name, _, _, a in self._arrays()}
        check_keys(state, expected, where, what="the model's state")
        return {name: check_array(state, name, where, shape=a.shape, kind="f" if a.dtype.kind == "f" else None)
                for name, a in expected.items()}

    def save(self, path) -> None:
        """Write the state dict to ``path`` (.npz) atomically."""
        save_npz_atomic(path, self.state_dict())

    def load(self, path) -> None:
        """Load a ``.npz`` written by :meth:`save` (never unpickles); StateError if it does not fit, model unchanged."""
        self.load_state_dict(load_npz(path), source=os.fspath(path))


def save_npz_atomic(path, arrays: dict) -> None:
    """np.savez to a temporary file in the same folder, then rename: never a half-written file."""
    atomic_write(path, lambda f: np.savez(f, **arrays), suffix=".npz")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")     # a zip archive (an .npz) with members / an empty one
_NPY_MAGIC = b"\x93NUMPY"                        # a single array written by np.save
_NPZ_HINT = "it may be truncated or corrupted (an interrupted copy?); use another copy, or write it again"


def load_npz(path) -> dict:
    """Every array of a ``.npz`` as ``{name: ndarray}``, read with ``allow_pickle=False``.

    A missing file is FileNotFoundError; anything else that is not a readable plain-array ``.npz``
    (a folder, an unreadable file, a ``.npy`` or other file under an ``.npz`` name, a truncated or
    corrupted archive, pickled objects) is a :class:`nanosgm.state.StateError` naming the file.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    _check_npz_head(path)
    try:
        _check_archive(path)
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise StateError(f"{path} contains pickled Python objects; nanosgm never unpickles checkpoints "
                             f"(that could run code). Only plain-array .npz files written by nanosgm load.") from exc
        raise StateError(f"{path} is not a readable .npz file ({exc}); {_NPZ_HINT}") from exc
    except PermissionError as exc:
        raise StateError(f"{path} cannot be read: permission denied; check its permissions") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise StateError(f"{path} is not a readable .npz file ({exc.__class__.__name__}: {exc}); {_NPZ_HINT}") from exc
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):        # np.load hands back the raw bytes of a member that is no .npy
            raise StateError(f"{path}: member {k!r} is not a NumPy array; not an .npz written by nanosgm")
    return arrays


def _check_archive(path: str) -> None:
    """StateError unless every member passes its CRC and the archive holds as many members as its end
    record states: NumPy reads a member only as far as its header says and zipfile checks a CRC only at a
    member's end, so a damaged header or central directory could otherwise drop or cut arrays silently."""
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            raise StateError(f"{path}: member {bad!r} fails its CRC check; {_NPZ_HINT}")
        stated, found = _stated_members(path), len(z.infolist())
    if stated is not None and stated != found:
        raise StateError(f"{path} states {stated} members but {found} can be read; {_NPZ_HINT}")


def _stated_members(path: str) -> int | None:
    """The member count in the zip's end-of-central-directory record (None for a ZIP64 archive)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 22 - 0xFFFF))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end-of-central-directory record")
    total = struct.unpack_from("<H", tail, at + 10)[0]
    return None if total == 0xFFFF else total


def _check_npz_head(path: str) -> None:
    """StateError unless ``path`` is a readable regular file that starts like a zip archive."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:                       # a dangling symbolic link, a link loop, a folder we may not enter
        raise StateError(f"{path} cannot be opened ({exc.strerror or exc}); "
                         f"{'it is a broken symbolic link; ' if os.path.islink(path) else ''}"
                         "point it at the real file") from exc
    if stat.S_ISDIR(mode):
        raise StateError(f"{path} is a folder, not an .npz file")
    if not stat.S_ISREG(mode):
        raise StateError(f"{path} is not a regular file (a pipe or device?), not an .npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except PermissionError as exc:
        raise StateError(f"{path} cannot be read: permission denied; check its permissions") from exc
    except OSError as exc:
        raise StateError(f"{path} cannot be read ({exc.__class__.__name__}: {exc})") from exc
    if head.startswith(_NPY_MAGIC):
        raise StateError(f"{path} holds a single .npy array (written by np.save), not an .npz archive of named "
                         "arrays; write it with Sequential.save or np.savez")
    if not head.startswith(_ZIP_MAGIC):
        what = "is empty" if not head else f"starts with {head!r}"
        raise StateError(f"{path} is not an .npz file (it {what}); {_NPZ_HINT}")
