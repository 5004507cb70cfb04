"""Adversarial examples: FGSM (Eq. 20), PGD, Auto-PGD, the Square attack, transfer, and accuracy under attack.

Every gradient attack uses the residual gradient at the inputs, dE/dx (Eq. 14), that
`model.backward(..., param_grads=False)` returns; the Square attack uses forward passes only.

    FGSM   (Goodfellow et al. 2015; the paper's Eq. 20):  x_adv = clip(x + eps * sign(dE/dx), lo, hi),
           E the softmax cross-entropy against the TRUE labels (batch mean; only its sign matters).
    PGD    (Madry et al. 2018): a random start in the L-inf eps-ball, then `steps` FGSM-like steps of size
           alpha, each followed by projection onto the eps-ball around x and onto the valid range;
           `restarts=R` keeps, per example, the worst of R random starts.
    APGD   (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
           parameter-free attacks", Algorithm 1): PGD with momentum 0.75 and a step size 2 * eps that is
           halved at fixed checkpoints when progress stalls, restarting from the best point; for the
           cross-entropy or the DLR loss (their Eq. 5).
    Square (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial attack
           via random search", Algorithm 1 and 2, L-inf): random search over square patches of colour
           +-eps, accepted per example when the margin loss drops. It never looks at a gradient, so
           gradient masking cannot fool it.
    transfer: examples crafted on one network and classified by another (`crafted_on`, `transfer_accuracy`).

The paper evaluates on an FGSM copy of the test set at eps in {0.001, 0.01, 0.1, 0.2} (`PAPER_EPS`).

    >>> import numpy as np
    >>> from nanosgm import attacks
    >>> from nanosgm.layers import Dense, Flatten, ReLU, Sequential
    >>> model = Sequential([Flatten(), Dense(16, 8), ReLU(), Dense(8, 3)])
    >>> x = np.random.default_rng(0).uniform(0, 1, (5, 1, 4, 4)).astype(np.float32)
    >>> y = np.array([0, 1, 2, 0, 1])
    >>> E, g = attacks.input_gradient(model, x, y)            # dE/dx (Eq. 14), shaped like x
    >>> x_adv = attacks.fgsm(model, x, y, eps=0.1)             # Eq. 20, clipped to [0, 1]
    >>> bool(np.allclose(x_adv, np.clip(x + 0.1 * np.sign(g), 0, 1))), float(np.abs(x_adv - x).max()) <= 0.1 + 1e-6
    (True, True)
    >>> acc = attacks.evaluate(model, x, y, [0.0, 0.1], "fgsm", progress=False)   # {eps: accuracy}
    >>> acc[0.0] == attacks.accuracy(model, x, y), sorted(acc)
    (True, [0.0, 0.1])

Model state: by default the attacks differentiate the network in inference mode (`training=False`):
dropout is off and batch normalisation uses (and does not update) its running statistics. In
inference mode every example is attacked independently of the others in its batch. The
authors' own evaluation script computed the gradient with the network in training mode and did not
clip to [0, 1]; `fgsm(..., training=True, clip=None)` reproduces that. In training mode batch
normalisation would update its running statistics; the attack saves and restores them, so an
attack never changes the model -- neither its parameters nor its buffers, nor the weight gradients
the layers hold (the backward pass runs with ``param_grads=False``: dE/dx only, which is also cheaper).
In training mode dropout draws its masks from the backend's generator, advancing it.

Modules: `state` (the model left as it was; backend and random-draw helpers), `gradients` (losses and
dE/dx), `fgsm`, `pgd`, `apgd`, `square`, `transfer`, `evaluation` (accuracy, `evaluate`, `ATTACKS`),
`conventions` (FGSM accuracy measured this project's way or the authors' way), `readings` (the authors'
way taken apart one factor at a time, and the gradient-masking check).
"""
from .apgd import apgd, apgd_checkpoints, apgd_start
from .conventions import CONVENTIONS, Convention, fgsm_accuracy, fgsm_correct
from .evaluation import ATTACKS, PAPER_EPS, accuracy, correct_under_attack, evaluate, n_steps
from .fgsm import fgsm
from .gradients import (cross_entropy_loss, dlr_loss, input_gradient, keras_cross_entropy_loss,
                        loss_and_input_gradient, margin, mixed_forward)
from .pgd import pgd
from .readings import READINGS, fgsm_readings, masking_shares, parse_reading, reading
from .square import square, square_p, square_side
from .transfer import crafted_on, transfer_accuracy

__all__ = ["PAPER_EPS", "ATTACKS", "input_gradient", "loss_and_input_gradient", "cross_entropy_loss",
           "dlr_loss", "margin", "fgsm", "pgd", "apgd", "apgd_start", "apgd_checkpoints", "square",
           "square_p", "square_side", "crafted_on", "transfer_accuracy", "accuracy", "correct_under_attack",
           "n_steps", "evaluate", "CONVENTIONS", "fgsm_accuracy", "fgsm_correct", "keras_cross_entropy_loss",
           "Convention", "mixed_forward", "READINGS", "reading", "parse_reading", "fgsm_readings", "masking_shares"]
