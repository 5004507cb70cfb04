"""``python -m nanosgm.plot``: one run's learning curves (the code is :mod:`nanosgm.experiments.plot_run`)."""
import sys

if __name__ == "__main__":
    from .plumbing.blas import limit_spin_wait
    limit_spin_wait()        # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)
    from .experiments.plot_run import main
    sys.exit(main())
