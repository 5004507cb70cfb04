"""``python -m nanosgm.train``: train one network (the command line is :mod:`nanosgm.experiments.train_cli`;
the training loop is :func:`nanosgm.methods.fit`)."""
import sys

if __name__ == "__main__":
    from .plumbing.blas import limit_spin_wait
    limit_spin_wait()        # before NumPy loads OpenBLAS (nanosgm/plumbing/blas.py)
    from .experiments.train_cli import main
    sys.exit(main())
