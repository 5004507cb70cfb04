"""Gradient checking in float32 reports errors of about 1e-2 that say nothing about the code (the round-off of
f swamps the difference quotient): layers.gradcheck warns, naming float64, instead of staying silent."""
import warnings

import numpy as np
import pytest

from nanosgm.layers import Dense, Flatten, ReLU, Sequential, SoftmaxCrossEntropy
from nanosgm.layers.gradcheck import check_layer, check_model, numerical_gradient

pytestmark = pytest.mark.usefixtures("numpy_backend")


def test_float32_inputs_warn_that_central_differences_need_float64():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="float64"):
        check_layer(Dense(4, 2, rng=np.random.default_rng(1)), x)
    with pytest.warns(UserWarning, match="float64"):
        numerical_gradient(lambda: float((x ** 2).sum()), x)


def test_float32_parameters_warn_too():
    model = Sequential([Flatten(), Dense(4, 3, rng=np.random.default_rng(1)), ReLU()])     # float32 weights
    x = np.random.default_rng(0).standard_normal((2, 4))                                  # float64 input
    with pytest.warns(UserWarning, match="float64"):
        check_model(model, SoftmaxCrossEntropy(), x, np.array([0, 2]))


def test_float64_checks_stay_silent():
    x = np.random.default_rng(0).standard_normal((3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        errors = check_layer(Dense(4, 2, dtype="float64", rng=np.random.default_rng(1)), x)
    assert max(errors.values()) < 1e-7
