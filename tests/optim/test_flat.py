"""The optimizers' flat device path (nanosgm/optim/flat.py): on a device backend every parameter, gradient
and slot lives in one flat buffer and a step is one gather plus one kernel. Checked on the CPU stand-in
against the NumPy path, bit for bit."""
import copy
import io

import numpy as np
import pytest

from nanosgm import standin
from nanosgm.layers import BatchNorm, Conv2D, Dense, Flatten, ReLU, Sequential
from nanosgm.optim import build_optimizer

KINDS = {
    "adam": ("adam", {}),
    "wame": ("wame", {}),                                   # the authors' form
    "wame-printed": ("wame-printed", {}),
    "wame-printed-literal": ("wame-printed", {"literal": True}),
    "sgd-momentum": ("sgd", {"momentum": 0.9}),
}
KERNEL = {"adam": "adam_step", "wame": "wame_step", "wame-printed": "wame_step", "wame-printed-literal": "wame_step"}


def host_model(seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential([Conv2D(1, 3, 3, rng=rng), BatchNorm(3), ReLU(), Flatten(), Dense(3 * 4 * 4, 5, rng=rng),
                       Dense(5, 4, bias=False, rng=rng)])


def on_device(model: Sequential) -> Sequential:
    """A copy of the NumPy ``model`` with every parameter and buffer a stand-in array."""
    dev = copy.deepcopy(model)
    for layer in dev.layers:
        for d in (layer.params, layer.buffers):
            for k, a in d.items():
                d[k] = standin.asarray(a)
    return dev


def grads_for(model: Sequential, steps: int, seed: int = 1) -> list:
    """Per step, {(layer, key): float32 host gradient} with exact zeros, sign flips and repeated signs."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        step = {}
        for i, layer in enumerate(model.layers):
            for key, p in layer.params.items():
                g = rng.standard_normal(p.shape).astype(np.float32)
                g[rng.random(p.shape) < 0.2] = 0
                if k % 2 and out:
                    g[..., :1] = out[-1][(i, key)][..., :1]        # same sign as last step: zeta grows
                step[(i, key)] = g
        out.append(step)
    return out


def set_grads(model: Sequential, grads: dict, device: bool) -> None:
    for (i, key), g in grads.items():
        model.layers[i].grads[key] = standin.asarray(g) if device else g.copy()


def host_params(model: Sequential) -> dict:
    return {name: (p.get() if isinstance(p, standin.ndarray) else p).copy() for name, p, _ in model.parameters()}


def assert_same_bits(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def optimizer_state(opt) -> dict:
    return {k: v for k, v in opt.state_dict().items() if k.startswith("state.")}


def run_both(kind: str, steps: int = 5):
    """The same steps on a NumPy model and its stand-in copy: (host model, device model, host opt, device opt)."""
    name, kw = KINDS[kind]
    model = host_model()
    dev = on_device(model)
    opt, opt_dev = build_optimizer(name, lr=0.01, **kw), build_optimizer(name, lr=0.01, **kw)
    for g in grads_for(model, steps):
        set_grads(model, g, False)
        set_grads(dev, g, True)
        opt.step(model)
        opt_dev.step(dev)
    return model, dev, opt, opt_dev


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_flat_device_path_gives_the_numpy_bits(kind):
    model, dev, opt, opt_dev = run_both(kind)
    assert opt._flat is None and opt_dev._flat is not None          # NumPy: per parameter; device: flat
    assert_same_bits(host_params(dev), host_params(model))
    assert_same_bits(optimizer_state(opt_dev), optimizer_state(opt))
    assert not np.array_equal(host_params(dev)["0.W"], host_params(host_model())["0.W"])   # it moved


@pytest.mark.parametrize("kind", list(KINDS))
def test_parameters_and_slots_are_views_of_one_buffer_each(kind):
    _, dev, _, opt = run_both(kind, steps=2)
    layout = opt._flat
    for name, p, _ in dev.parameters():
        assert standin.shares_memory(p, layout.param), name
        for slot, a in opt.state[name].items():
            assert standin.shares_memory(a, layout.slots[slot]), (name, slot)
    assert layout.param.size == dev.num_params() and set(layout.slots) == set(opt.state["0.W"])


@pytest.mark.parametrize("kind", ["adam", "wame", "wame-printed-literal"])
def test_a_device_step_is_one_gather_and_one_kernel(kind):
    name, kw = KINDS[kind]
    model = host_model()
    dev = on_device(model)
    opt = build_optimizer(name, lr=0.01, **kw)
    grads = grads_for(model, 3)
    set_grads(dev, grads[0], True)
    opt.step(dev)                                   # first step: makes the slots and the flat layout
    for g in grads[1:]:
        set_grads(dev, g, True)
        with standin.counting() as c:
            opt.step(dev)
        assert (c.launches, c.host_reads, c.uploads) == (2, 0, 0)
        assert dict(c.kernels) == {"concatenate": 1, KERNEL[kind]: 1}


def test_a_model_that_cannot_rebind_its_parameters_is_updated_parameter_by_parameter():
    """A plain list of (name, param, grad) has no bind_parameters: one kernel per parameter, the same bits."""
    rng = np.random.default_rng(0)
    host = {n: rng.standard_normal(s).astype(np.float32) for n, s in (("a", (3, 4)), ("b", (4,)), ("c", (2, 2)))}
    dev = {n: standin.asarray(a) for n, a in host.items()}
    opt, opt_dev = build_optimizer("wame", lr=0.01), build_optimizer("wame", lr=0.01)
    for _ in range(3):
        grads = {n: rng.standard_normal(a.shape).astype(np.float32) for n, a in host.items()}
        opt.step([(n, host[n], grads[n]) for n in host])
        with standin.counting() as c:
            opt_dev.step([(n, dev[n], standin.asarray(grads[n])) for n in host])
    assert opt_dev._flat is None and dict(c.kernels) == {"wame_step": 3}
    assert_same_bits({n: a.get() for n, a in dev.items()}, host)


@pytest.mark.parametrize("kind", ["adam", "wame"])
def test_state_dict_round_trip_on_the_flat_path(kind):
    """The flat path saves the same checkpoint as NumPy ("state.<param>.<slot>"); a fresh optimizer that loads
    it (on the same model, or on a copy) continues bit for bit as the uninterrupted run."""
    name, kw = KINDS[kind]
    model = host_model()
    dev, dev_copy = on_device(model), None
    opt, opt_dev = build_optimizer(name, lr=0.01, **kw), build_optimizer(name, lr=0.01, **kw)
    grads = grads_for(model, 6)
    for g in grads[:3]:
        set_grads(model, g, False)
        set_grads(dev, g, True)
        opt.step(model)
        opt_dev.step(dev)
    saved = opt_dev.state_dict()
    assert_same_bits(optimizer_state(opt_dev), optimizer_state(opt))
    buf = io.BytesIO()
    np.savez(buf, **saved)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    dev_copy = on_device(model)                                  # a fresh device model with the same weights
    resumed = build_optimizer(name)
    resumed.load_state_dict(loaded, model=dev_copy)
    opt_dev.load_state_dict(loaded)                              # and the running one, reloaded in place
    for g in grads[3:]:
        for m, o, device in ((model, opt, False), (dev, opt_dev, True), (dev_copy, resumed, True)):
            set_grads(m, g, device)
            o.step(m)
    assert resumed._flat is not None and opt_dev._flat is not None
    assert_same_bits(host_params(dev), host_params(model))
    assert_same_bits(host_params(dev_copy), host_params(model))
    assert_same_bits(optimizer_state(resumed), optimizer_state(opt))
    assert_same_bits(optimizer_state(opt_dev), optimizer_state(opt))


def test_a_rebound_parameter_makes_a_new_layout():
    """Rebinding a parameter to a new array (as a load or a move may) is noticed: the next step gathers it
    into a new flat buffer, with the slots it had, and the run goes on as on NumPy."""
    model = host_model()
    dev = on_device(model)
    opt, opt_dev = build_optimizer("wame", lr=0.01), build_optimizer("wame", lr=0.01)
    grads = grads_for(model, 6)
    new_W = np.random.default_rng(9).standard_normal(model[4].params["W"].shape).astype(np.float32)
    for k, g in enumerate(grads):
        if k == 3:
            model[4].params["W"] = new_W.copy()
            dev[4].params["W"] = rebound = standin.asarray(new_W)
            before = opt_dev._flat
        set_grads(model, g, False)
        set_grads(dev, g, True)
        opt.step(model)
        opt_dev.step(dev)
        if k == 3:
            assert opt_dev._flat is not before and dev[4].params["W"] is not rebound
            assert standin.shares_memory(dev[4].params["W"], opt_dev._flat.param)
    assert_same_bits(host_params(dev), host_params(model))
    assert_same_bits(optimizer_state(opt_dev), optimizer_state(opt))


def test_loading_the_model_in_place_keeps_the_layout():
    """Sequential.load_state_dict writes into the parameters it holds (the views): the layout stays."""
    model = host_model()
    dev = on_device(model)
    opt_dev = build_optimizer("adam", lr=0.01)
    grads = grads_for(model, 2)
    set_grads(dev, grads[0], True)
    opt_dev.step(dev)
    layout = opt_dev._flat
    dev.load_state_dict(host_model(seed=5).state_dict())
    set_grads(dev, grads[1], True)
    with standin.counting() as c:
        opt_dev.step(dev)
    assert opt_dev._flat is layout and c.launches == 2


def test_mixed_dtypes_take_the_per_parameter_path():
    model = Sequential([Dense(3, 2, dtype="float32"), Dense(2, 2, dtype="float64")])
    dev = on_device(model)
    for layer in dev.layers:
        layer.grads = {k: standin.ones(p.shape, p.dtype) for k, p in layer.params.items()}
    opt = build_optimizer("adam")
    with standin.counting() as c:
        opt.step(dev)
    assert opt._flat is None and c.kernels["adam_step"] == 4


def test_bind_parameters_refuses_another_shape_or_dtype():
    model = host_model()
    with pytest.raises(ValueError, match=r"^parameter '4.W' is float32 \(48, 5\), it cannot be bound to a float64"):
        model.bind_parameters({"4.W": np.zeros((48, 5))})
    view = np.zeros(48 * 5, np.float32).reshape(48, 5)
    model.bind_parameters({"4.W": view})
    assert model[4].params["W"] is view
