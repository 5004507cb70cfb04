"""How a network is trained: the loop (:func:`fit`) and the training methods.

    base         the Method interface, and the control (plain training)
    sgm          the Smooth Gradient Method: input updates on the stored training set (Eq. 14, 15, 21)
    adaptive     SGM's input step taken by an optimizer's rule (momentum, Adam, sign): Section 6's future work
    published    the authors' published Keras code path
    adversarial  adversarial training (FGSM, FGSM-RS, PGD): the baselines a defence is compared with
    gradreg      input-gradient regularisation by a hand-written double backward (Section 6's future work)
    arms         the arm grammar: "sgm:0.2:per-sample" <-> SGM(0.2, per_sample=True)
    loop         fit(model, optimizer, X, y, epochs=..., method=...)
    keeping      checkpoints, resuming, history, snapshots (what fit keeps besides the weights)
"""
from .adaptive import AdaptiveSGM
from .adversarial import AdversarialTraining
from .arms import parse_arm, parse_arms
from .base import Control, Method
from .gradreg import GradientRegularisation
from .keeping import FitResult, Interrupted, RunKeeping
from .loop import TrainingDiverged, epoch_seed, fit
from .published import Published
from .sgm import SGM, SmoothGradient, input_update

__all__ = ["fit", "FitResult", "RunKeeping", "Interrupted", "TrainingDiverged", "epoch_seed", "Method", "Control", "SGM",
           "SmoothGradient", "input_update", "Published", "AdversarialTraining", "AdaptiveSGM", "GradientRegularisation", "parse_arm", "parse_arms"]
