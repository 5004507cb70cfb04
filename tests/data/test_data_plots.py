"""The figures the notebooks use: original vs. elastically distorted digits, and CIFAR-format images
before/after ZCA and augmentation (from the fixture)."""
from __future__ import annotations

import numpy as np
import pytest

import nanosgm.data as data
from conftest import write_cifar_fixture

matplotlib = pytest.importorskip("matplotlib")


def _pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def test_elastic_grid_figure(tmp_path):
    g = np.random.default_rng(0)
    X = np.zeros((5, 1, 28, 28), np.float32)
    X[:, :, 5:23, 12:16] = g.uniform(0.5, 1, (5, 1, 1, 1))
    fig = data.plot_elastic_grid(X, n=5, repeats=2, rng=0)
    axes = fig.get_axes()
    assert len(axes) == 15 and axes[0].get_ylabel() == "original" and axes[5].get_ylabel() == "elastic #1"
    shown = [ax.get_images()[0].get_array() for ax in axes]
    assert np.allclose(shown[0], X[0, 0] / X[0, 0].max())
    assert not np.allclose(shown[5], shown[0]) and not np.allclose(shown[10], shown[5])
    assert _pixels(fig).std() > 10
    fig.savefig(tmp_path / "elastic.png")
    assert (tmp_path / "elastic.png").stat().st_size > 1000


def test_cifar_preprocessing_figure_from_the_fixture(isolated_data_env):
    fx = write_cifar_fixture(isolated_data_env / "d", "cifar10", per_batch=8, layout="archive")
    ds = data.load("cifar10", isolated_data_env / "d", val_size=8, checksums=fx["checksums"])
    zca = data.ZCA(eps=1e-2).fit(ds.X_train)
    fig = data.plot_cifar_preprocessing(ds.X_test, n=6, zca=zca, rng=1)
    axes = fig.get_axes()
    assert len(axes) == 18 and [axes[i].get_ylabel() for i in (0, 6, 12)] == [
        "original", "ZCA (eps=0.01)", "ZCA + rot/zoom/flip"]
    first = axes[0].get_images()[0].get_array()
    assert first.shape == (32, 32, 3)
    assert not np.allclose(axes[6].get_images()[0].get_array(), first)
    assert _pixels(fig).std() > 10
