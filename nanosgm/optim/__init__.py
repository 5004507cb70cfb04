"""Weight update rules (the paper's Eq. 1-2, `W_{t+1} = W_t - lambda * grad E_t(W_t)`, and its refinements)
and the authors' learning-rate schedule.

The paper trains every network with WAME (its Ref. [18], nanosgm/optim/wame.py); SGD and Adam are here
as baselines. One module each: base.py (the Optimizer: parameter walk, lr, state, checkpoints), sgd.py,
adam.py, wame.py (each with its fast path, bit for bit its readable update: one kernel of
nanosgm/kernels/optim.py), sign.py (sign descent, used as an input rule), flat.py (on a GPU:
parameters, gradients and slots in flat buffers, so that a step is one kernel), registry.py
(`build_optimizer`), schedules.py.

Every optimizer has the same small interface:

    >>> import numpy as np
    >>> from nanosgm.layers import Dense, Sequential, SoftmaxCrossEntropy
    >>> from nanosgm.optim import build_optimizer
    >>> model, loss = Sequential([Dense(4, 3)]), SoftmaxCrossEntropy()
    >>> opt = build_optimizer("wame", lr=1e-3)
    >>> E = loss.forward(model.forward(np.ones((2, 4), np.float32), training=True), np.array([0, 2]))
    >>> _ = model.backward(loss.backward())   # fills the grads
    >>> W_before = model[0].params["W"].copy()
    >>> opt.step(model)        # updates every parameter IN PLACE from its gradient
    >>> bool((model[0].params["W"] != W_before).any()), opt.t
    (True, 1)
    >>> opt.lr = 1e-4          # the learning rate is a plain attribute (see nanosgm.optim.schedules)
    >>> d = opt.state_dict()   # flat {str: host NumPy array}, safe for np.savez / np.load(allow_pickle=False)
    >>> sorted(k for k in d if k.startswith("state.0.W."))
    ['state.0.W.Z', 'state.0.W.g_sign', 'state.0.W.theta', 'state.0.W.zeta']
    >>> opt2 = build_optimizer("wame")
    >>> opt2.load_state_dict(d)    # restored onto each parameter's own backend at the next step
    >>> opt2.lr, opt2.t
    (0.0001, 1)

`model` is anything with a `parameters()` method yielding `(name, param, grad)` triples (or such an
iterable itself). Per-parameter state is keyed by `name`, allocated lazily on the first step with the
parameter's array module (NumPy or CuPy) and dtype, and updated with whole-array xp operations.
"""
from .adam import Adam
from .base import Optimizer
from .registry import OPTIMIZERS, build_optimizer
from .schedules import StepSchedule, paper_schedule
from .sgd import SGD
from .sign import SignSGD
from .wame import WAME

__all__ = ["Optimizer", "SGD", "Adam", "WAME", "SignSGD", "build_optimizer", "OPTIMIZERS", "StepSchedule", "paper_schedule"]
