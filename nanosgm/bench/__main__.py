"""``python -m nanosgm.bench``: see :mod:`nanosgm.bench.bench`."""
import sys

from ..plumbing.blas import limit_spin_wait

limit_spin_wait()            # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)

from .bench import main  # noqa: E402

sys.exit(main())
