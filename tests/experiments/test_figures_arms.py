"""Figures 1-2 of a protocol with many arms (issue 25): every arm is drawn, each in a style of its own, and the
legend covers no curve."""
import numpy as np
import pytest

from nanosgm.experiments import figures

ARMS = ["control", "sgm:0.2", "sgm:0.2:per-sample", "published", "fgsm-at:0.1", "fgsm-rs:0.1", "pgd-at:0.1:7"]


def fake_result(arms, runs=3, epochs=4):
    """A protocol result with only what Figures 1-2 read: the arms and each network's test error per epoch."""
    nets = {f"run{r}/{arm}": {"history": [{"test_error_pct": 10.0 + a + r + e} for e in range(epochs)]}
            for a, arm in enumerate(arms) for r in range(runs)}
    return {"arms": list(arms), "networks": nets, "config": {"dataset": "mnist", "model": "cnn"}}


@pytest.mark.parametrize("n_arms", [7, 12])
def test_every_arm_has_a_curve_of_its_own(n_arms):
    """The seventh arm (pgd-at:0.1:7) had no colour left in a palette of six and was dropped."""
    arms = (ARMS + [f"sgm:0.{k}" for k in range(3, 9)])[:n_arms]
    ax = figures.test_error_curves(fake_result(arms)).axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == arms
    for a, line in enumerate(lines):                 # median over runs r = 0, 1, 2 of 10 + a + r + e
        assert np.allclose(line.get_ydata(), 11.0 + a + np.arange(4))
    assert len(ax.collections) == n_arms             # one min-max band per arm
    styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
    assert len(styles) == n_arms


def test_the_legend_names_every_arm_and_covers_no_curve():
    fig = figures.test_error_curves(fake_result(ARMS))
    ax = fig.axes[0]
    legend = ax.get_legend()
    fig.draw_without_rendering()
    box, plot = legend.get_window_extent(), ax.get_window_extent()
    assert not box.overlaps(plot), (box, plot)
    assert box.x1 <= fig.bbox.x1 + 1 and box.y0 >= fig.bbox.y0 - 1, "the legend runs off the figure"
    assert [t.get_text() for t in legend.get_texts()] == [f"{arm}: median, min-max of 3" for arm in ARMS]
