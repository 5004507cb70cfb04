"""``python -m nanosgm.decompose PROTOCOL_DIR``: the authors' FGSM taken apart on a protocol's saved networks
(the code is :mod:`nanosgm.experiments.decompose`)."""
import sys

if __name__ == "__main__":
    from .plumbing.blas import limit_spin_wait
    limit_spin_wait()        # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)
    from .experiments.decompose import main
    sys.exit(main())
