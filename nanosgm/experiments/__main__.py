"""``python -m nanosgm.experiments``: see :mod:`nanosgm.experiments.cli`."""
import sys

from ..plumbing.blas import limit_spin_wait

limit_spin_wait()            # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)

from .cli import main  # noqa: E402

sys.exit(main())
