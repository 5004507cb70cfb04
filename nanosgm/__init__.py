"""nanosgm: a from-scratch NumPy/CuPy framework for "Hardening against adversarial examples with the
Smooth Gradient Method" (Mosca & Magoulas).

Modules, one concept each:
    backend   - NumPy or CuPy, seeded generators
    layers    - hand-written forward/backward pairs that backpropagate to the inputs (Eq. 6-14)
    gradcheck - central-difference gradient checking
    data      - MNIST / Fashion-MNIST / CIFAR loading, preprocessing and augmentation
    optim     - SGD, Adam and WAME weight updates
    sgm       - the Smooth Gradient Method's input updates (Eq. 15, 21)
    attacks   - FGSM (Eq. 20) and PGD
    models    - the paper's networks (Tables 1-3)
    train     - the training loop and `python -m nanosgm.train`
    bench     - `python -m nanosgm.bench`
"""
__version__ = "0.1.0"

from .blas import limit_spin_wait as _limit_spin_wait

_limit_spin_wait()        # before NumPy loads OpenBLAS, where possible (see nanosgm/blas.py)
