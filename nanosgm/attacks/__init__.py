"""Adversarial examples and accuracy under attack: FGSM (Eq. 20), PGD, APGD, Square, transfer."""
from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401
