"""WAME, the weight update rule the paper trains every network with (Section 5; its Ref. [18]:
Mosca & Magoulas, "Training convolutional networks with weight-wise adaptive learning rates",
ESANN 2017), a refinement of Eq. 2's step `w <- w - lambda * g`.

Per weight WAME keeps an acceleration factor zeta (starts at 1), its moving average Z, a moving average
theta of the squared gradient (starts at 0) and the sign of the previous gradient g_prev (starts at 0;
only its sign enters the rule, so it is stored as the int8 slot "g_sign"). Both forms share zeta's
rule, with g the current gradient:

    zeta <- zeta * eta_plus    where g * g_prev > 0   (same sign: accelerate)
    zeta <- zeta * eta_minus   where g * g_prev < 0   (sign flip: brake)
            (unchanged where g * g_prev == 0, e.g. at the first step)
    g_prev <- g

and differ in the rest. ``form="printed"`` (``build_optimizer("wame-printed")``): the algorithm as
printed in the WAME paper (Z starts at 0):

    zeta  <- clip(zeta, zeta_min, zeta_max)
    Z     <- alpha * Z     + (1 - alpha) * zeta
    theta <- alpha * theta + (1 - alpha) * g^2
    w     <- w - lr * Z * g / (sqrt(theta) + eps)      (literal=True: / (theta + eps), as printed)

``form="authors"`` (DEFAULT): the update of the authors' published Keras implementation, the code
behind the paper's numbers (Z starts at 1, theta averages g^2 over ~1000 steps, Adam's bias correction):

    zc    = clip(zeta, zeta_min, zeta_max)           (zeta itself is kept unclipped, as in that code, so
                                                      it remembers how far past a bound it went; here
                                                      within [1e-30, 1e30], so that float32 never turns it
                                                      into inf or 0, which would freeze zc at a bound)
    Z     <- alpha * Z     + (1 - alpha) * zc
    theta <- beta2 * theta + (1 - beta2) * g^2
    w     <- w - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * (zc / Z) * g / (sqrt(theta) + eps)

Why the default is the authors' form. In the printed form the step is lr * Z: with mini-batch noise
the gradient's sign flips about half the time, each flip divides zeta by 10 and each agreement only
multiplies it by 1.2, so zeta and Z sink to zeta_min for most weights and the step to ~lr / 100
(tests/optim/test_optim.py shows the mechanism; notebooks/05_wame.ipynb plots it and compares both forms
with Adam and SGD on MNIST). In the authors' form the ratio zc / Z compares zeta with its own recent
average, so it stays near 1 whatever level zeta sinks to.
One detail of that published code is not copied: it stores the previous *parameter* where the
previous gradient belongs (so zeta follows sign(g * w)); here g_prev is the gradient, as the paper
defines the rule.

Denominator of the printed form: the paper prints theta, which makes the step scale like lr * Z / |g|
(units of w / g, unbounded as the gradient vanishes); sqrt(theta), the RMSprop normalisation WAME
builds on, gives a scale-free step of about lr * Z * sign(g) and is used unless literal=True.
tests/optim/test_optim.py::test_wame_printed_sqrt_vs_literal_on_a_quadratic shows both on E = c w^2 / 2.

The sign test uses sign(g) * sign(g_prev), so that a product of two tiny float32 gradients that
underflows to 0 is not mistaken for "no information".
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from ..kernels import optim as optim_kernels
from .base import Optimizer

if TYPE_CHECKING:
    from ..layers.base import Array
    from ..plumbing.state import Where

__all__ = ["WAME"]


def _sign_of(host: np.ndarray) -> np.ndarray:
    """A checkpoint's "g_prev" slot (the previous gradient itself, float) as the int8 slot "g_sign"."""
    return np.sign(host).astype(np.int8)


class WAME(Optimizer):
    """WAME, Weight-wise Adaptive learning rates with Moving average Estimator (the module docstring
    gives the rule and its two forms). `step` runs :meth:`update_fused`, bit for bit :meth:`update`."""

    elementwise = True
    kind = "wame"
    FORMS = ("authors", "printed")
    ZETA_STORE = (1e-30, 1e30)     # the authors' form: the range the unclipped zeta is kept in
    hyper = ("alpha", "eta_plus", "eta_minus", "zeta_min", "zeta_max", "eps", "literal", "beta1", "beta2")
    choices = ("form",)
    old_slots = {"g_prev": ("g_sign", _sign_of)}   # a loaded "g_prev" becomes its sign: the same next step

    def __init__(self, lr: float = 1e-3, alpha: float = 0.9, eta_plus: float = 1.2, eta_minus: float = 0.1,
                 zeta_min: float = 0.01, zeta_max: float = 100.0, eps: float = 1e-8, literal: bool = False,
                 form: str = "authors", beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.alpha, self.eta_plus, self.eta_minus = float(alpha), float(eta_plus), float(eta_minus)
        self.zeta_min, self.zeta_max, self.eps = float(zeta_min), float(zeta_max), float(eps)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.literal = bool(literal)
        self.form = str(form)
        if self.form not in self.FORMS:
            raise ValueError(f"WAME form must be one of {', '.join(self.FORMS)}, got {form!r}")
        if self.literal and self.form != "printed":
            raise ValueError("literal=True (divide by theta, as printed) applies to form='printed' only")
        if not (0 < self.zeta_min <= 1.0 <= self.zeta_max and self.eta_minus < 1.0 < self.eta_plus):
            raise ValueError("WAME needs 0 < zeta_min <= 1 <= zeta_max and eta_minus < 1 < eta_plus (zeta starts at 1), "
                             f"got zeta_min={zeta_min}, zeta_max={zeta_max}, eta_minus={eta_minus}, eta_plus={eta_plus}")

    def init_state(self, param: Array) -> dict[str, Array]:
        xp = backend.array_module(param)
        Z = xp.ones_like(param) if self.form == "authors" else xp.zeros_like(param)
        return {"zeta": xp.ones_like(param), "Z": Z, "theta": xp.zeros_like(param),
                "g_sign": xp.zeros(param.shape, dtype=xp.int8)}

    def step_size(self) -> float:
        """The step's learning rate: lr (printed form); lr * sqrt(1 - beta2^t) / (1 - beta1^t) (authors').
        WAME is a weight rule only (not one of the input rules that keep a per-row ``t``), so t is an int."""
        if self.form == "printed":
            return self.lr
        t = int(self.t)
        return self.lr * (1.0 - self.beta2 ** t) ** 0.5 / (1.0 - self.beta1 ** t)

    def update(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        """One WAME step for one parameter, written as the rule (module docstring), on whole arrays."""
        xp = backend.array_module(param)
        zeta, Z, theta, g_sign = state["zeta"], state["Z"], state["theta"], state["g_sign"]
        a, printed = self.alpha, self.form == "printed"
        # zeta <- zeta * eta_plus / eta_minus / 1 where sign(g) * sign(g_prev) is +1 / -1 / 0;  g_prev <- g
        agree = xp.sign(grad) * g_sign
        zeta *= xp.where(agree > 0, self.eta_plus, xp.where(agree < 0, self.eta_minus, 1.0)).astype(zeta.dtype)
        g_sign[...] = xp.sign(grad)
        if printed:                     # zeta kept in [zeta_min, zeta_max]; theta's rate is alpha
            zeta[...] = xp.clip(zeta, self.zeta_min, self.zeta_max)
            zc, rate = zeta, a
        else:                           # zeta kept unclipped (in ZETA_STORE), zc is it clipped; theta's rate is beta2
            zeta[...] = xp.clip(zeta, *self.ZETA_STORE)
            zc, rate = xp.clip(zeta, self.zeta_min, self.zeta_max), self.beta2
        Z[...] = a * Z + (1 - a) * zc
        theta[...] = rate * theta + (1 - rate) * (grad * grad)
        ratio = Z if printed else zc / Z
        denominator = theta + self.eps if self.literal else xp.sqrt(theta) + self.eps
        param -= ratio * grad / denominator * self.step_size()          # Eq. 2's step, w <- w - lr_t * ...

    def update_fused(self, param: Array, grad: Array, state: dict[str, Array]) -> None:
        """:meth:`update` in place: :func:`nanosgm.kernels.optim.wame_step` with these settings, the same bits
        (its NumPy reference makes the same passes over two scratch arrays).

        Memory traffic per weight and step (float32, each array read or written once): reads g, zeta, Z,
        theta, w (20 B) and the int8 sign of the previous gradient (1 B), writes zeta, Z, theta, w (16 B) and
        the sign (1 B): 38 bytes, against Adam's 28 (reads g, m, v, w; writes m, v, w)."""
        optim_kernels.wame_step(param, grad, state["zeta"], state["Z"], state["theta"], state["g_sign"],
                                lr_t=self.step_size(), alpha=self.alpha, beta2=self.beta2, eta_plus=self.eta_plus,
                                eta_minus=self.eta_minus, zeta_min=self.zeta_min, zeta_max=self.zeta_max,
                                store=self.ZETA_STORE, eps=self.eps, printed=self.form == "printed",
                                literal=self.literal)

    def _checked_settings(self, settings: dict, where: Where) -> dict:
        """The form is one of FORMS, and `literal` (saved as a float) is a bool that goes with 'printed'."""
        if settings["form"] not in self.FORMS:
            raise where.error(f"{where.key('form')} is {settings['form']!r}, not one of {', '.join(self.FORMS)}")
        literal = bool(settings["literal"])
        if literal and settings["form"] != "printed":
            raise where.error(f"{where.key('literal')} is set but {where.key('form')} is {settings['form']!r}; "
                              "literal applies to 'printed' only")
        return settings | {"literal": literal}
