"""The paper's networks by name (nanosgm/models.py): Table 1's DNN in our reading and in the authors' Keras
reading ("dnn-keras"), whose differences are exactly the ones its docstring names."""
import numpy as np
import pytest

from nanosgm import backend, models
from nanosgm.layers import BatchNorm, Dense


def test_the_keras_reading_of_table_1_differs_only_where_it_says():
    backend.seed(0)
    ours, keras = models.build("dnn"), models.build("dnn-keras")
    assert len(keras.layers) == len(ours.layers) + 1 and isinstance(keras.layers[-1], BatchNorm)
    assert keras.layers[-1].num_features == 10
    for a, b in zip(ours.layers, keras.layers):
        assert type(a) is type(b)
        if isinstance(a, BatchNorm):
            assert (a.momentum, a.eps) == (0.1, 1e-5) and (b.momentum, b.eps) == (0.01, 1e-3)
    assert [p.shape for _, p, _ in ours.parameters()] == [p.shape for _, p, _ in keras.parameters()][:-2]


def test_glorot_uniform_weights_lie_in_their_bound_and_fill_it():
    backend.seed(0)
    layer = Dense(2500, 2000, init="glorot")
    limit = np.sqrt(6.0 / (2500 + 2000))
    W = backend.to_host(layer.params["W"])
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.999 * limit
    assert np.var(W) == pytest.approx(limit ** 2 / 3, rel=0.01)          # the variance of U(-a, a)
    assert np.var(backend.to_host(Dense(2500, 2000).params["W"])) == pytest.approx(2 / 2500, rel=0.01)   # He


def test_an_unknown_init_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown init 'xavier' for Dense: choose 'he' or 'glorot'"):
        Dense(3, 2, init="xavier")
