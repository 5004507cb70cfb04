"""The arm grammar: a training method named by one short label, and back.

    control                 plain training (the paper's control)
    sgm:L                   the Smooth Gradient Method, lambda-bar L, batch-mean loss (Eq. 15 / 21)
    sgm:L:per-sample        the same with each sample's own loss (B times larger steps)
    sgm-RULE:L[:options]    SGM's input step by an optimizer's rule: RULE momentum, adam or sign;
                            options per-sample, ball=R, clip (the paper's future work, Section 6)
    published               the authors' Keras code path (an extra pass whose input update is thrown away)
    fgsm-at:E               adversarial training, FGSM with the clean/adversarial loss mix (Goodfellow et al.)
    fgsm-rs:E               adversarial training, FGSM from a random start (Wong et al.)
    pgd-at:E[:K]            adversarial training, PGD with K steps (default 7; Madry et al.)
    gradreg:MU              input-gradient regularisation E + MU mean ||dE_n/dx_n||^2, exact double backward
    gradreg-fd:MU:H         the same by Finlay & Oberman's finite difference of step H (Section 6's future work)

``parse_arm(label).label`` gives the label back in its canonical spelling (numbers as short as they can be
while reading back exactly). Adding a method = its class (with ``parse`` and ``label``) + one line in
:data:`GRAMMAR`.

    >>> parse_arm("sgm:0.2:per-sample")
    SGM('sgm:0.2:per-sample')
    >>> parse_arm("PGD-AT:0.10").label
    'pgd-at:0.1:7'
"""
from __future__ import annotations

from .adaptive import INPUT_RULES, AdaptiveSGM
from .adversarial import AdversarialTraining
from .base import Control, Method
from .gradreg import GradientRegularisation
from .published import Published
from .sgm import SGM

__all__ = ["GRAMMAR", "CONTROL", "parse_arm", "parse_arms", "slug"]

CONTROL = "control"

#: the first field of a label -> a parser ``(fields after it, clip) -> method``
GRAMMAR = {
    "control": Control.parse,
    "sgm": SGM.parse,
    **{f"sgm-{rule}": AdaptiveSGM.parser(rule) for rule in INPUT_RULES},
    "published": Published.parse,
    "fgsm-at": AdversarialTraining.parser("fgsm"),
    "fgsm-rs": AdversarialTraining.parser("fgsm-rs"),
    "pgd-at": AdversarialTraining.parser("pgd"),
    "gradreg": GradientRegularisation.parser(finite_difference=False),
    "gradreg-fd": GradientRegularisation.parser(finite_difference=True),
}

_USAGE = ("use control, published, sgm:LAMBDA, sgm:LAMBDA:per-sample (LAMBDA a non-zero number, e.g. sgm:0.2), "
          "sgm-momentum|sgm-adam|sgm-sign:STEP[:per-sample][:ball=R][:clip], "
          "fgsm-at:EPS, fgsm-rs:EPS, pgd-at:EPS[:STEPS], gradreg:MU or gradreg-fd:MU:H")


def parse_arm(text: str, *, clip: tuple[float, float] | None = (0.0, 1.0)) -> Method:
    """The training method a label names (a new instance each call); ValueError for anything else.
    ``clip``: the valid input range, for the methods that craft inputs (adversarial training)."""
    name, *args = str(text).strip().lower().split(":")
    if name not in GRAMMAR:
        raise ValueError(f"unknown arm {text!r}: {_USAGE}")
    try:
        return GRAMMAR[name](args, clip=clip)
    except ValueError as exc:
        raise ValueError(f"arm {text!r}: {exc}; {_USAGE}") from None


def parse_arms(text: str) -> list:
    """Canonical labels of a comma-separated arm list, the control first (added once if not named)."""
    labels = [parse_arm(a).label for a in text.split(",") if a.strip()]
    labels = [CONTROL] + [a for a in labels if a != CONTROL]
    if len(labels) == 1:
        raise ValueError("--arms needs at least one arm beside the control, e.g. sgm:0.2")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--arms names an arm twice: {text!r}")
    return labels


def slug(label: str) -> str:
    """The label as a file-name part: 'sgm:0.2:per-sample' -> 'sgm_0.2_per-sample'."""
    return label.replace(":", "_")
