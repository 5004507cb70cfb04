"""Weight updates (SGD, Adam, WAME: Eq. 1-5) and the authors' learning-rate schedule."""
from .optimizers import OPTIMIZERS, SGD, WAME, Adam, Optimizer, build_optimizer
from .schedules import StepSchedule, paper_schedule

__all__ = ["Optimizer", "SGD", "Adam", "WAME", "build_optimizer", "OPTIMIZERS", "StepSchedule", "paper_schedule"]
