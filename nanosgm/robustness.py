"""``python -m nanosgm.robustness``: the robustness audit (the code is :mod:`nanosgm.experiments.audit`)."""
import sys

if __name__ == "__main__":
    from .plumbing.blas import limit_spin_wait
    limit_spin_wait()        # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)
    from .experiments.audit import main
    sys.exit(main())
