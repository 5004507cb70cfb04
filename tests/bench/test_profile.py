"""nanosgm.bench.profile: GEMM FLOP counts from the layer shapes (the bench's 'fraction of the peak')."""
import numpy as np
import pytest

from nanosgm import models
from nanosgm.bench import profile
from nanosgm.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential


pytestmark = pytest.mark.usefixtures("numpy_backend")


def test_flops_of_dense_and_conv_layers_by_hand():
    conv = Conv2D(2, 3, 2, stride=1, padding=0)            # (2, 5, 5) -> (3, 4, 4)
    net = Sequential([conv, ReLU(), MaxPool2D(2), Flatten(), Dense(3 * 2 * 2, 7)])
    per_layer = [f for _, f in profile.forward_flops(net, (2, 5, 5))]
    assert per_layer == [2 * 4 * 4 * 3 * 2 * 2 * 2, 0, 0, 0, 2 * 12 * 7]
    f = profile.step_flops(net, (2, 5, 5), batch=8)
    fwd = 8 * (768 + 168)
    assert f == {"train_adam": 3 * fwd, "train_wame": 3 * fwd, "infer": fwd, "fgsm": 2 * fwd}


def test_flops_of_the_paper_cnn():
    """Table 2: 24x24x64 outputs of a 5x5x1 kernel, 8x8x64 of 5x5x64, then 1024x1024 and 1024x10."""
    f = profile.step_flops(models.build("cnn"), models.MNIST_SHAPE, batch=1)
    fwd = 2 * (24 * 24 * 64 * 25 + 8 * 8 * 64 * 64 * 25 + 1024 * 1024 + 1024 * 10)
    assert f["infer"] == fwd and f["train_adam"] == 3 * fwd


def test_stride_and_padding_change_the_count():
    net = Sequential([Conv2D(3, 4, 3, stride=2, padding=1)])     # 8x8 -> 4x4
    assert profile.step_flops(net, (3, 8, 8), batch=1)["infer"] == 2 * 4 * 4 * 4 * 3 * 9


def test_format_profile_shares_add_up():
    rows = [{"layer": "A", "fwd_s": 0.001, "bwd_s": 0.002, "gflop": 0.03},
            {"layer": "B", "fwd_s": 0.0005, "bwd_s": 0.0005, "gflop": 0.0}]
    text = profile.format_profile(rows, peak_gflops=60.0, extra=[("adam step", 0.002)])
    lines = [[c.strip() for c in line.split("|")] for line in text.splitlines()[2:]]
    assert lines[0] == ["A", "1.00", "2.00", "75.0", "30.0", "50"]        # 3 x 0.03 GFLOP in 3 ms
    assert lines[1][3] == "25.0" and lines[1][4] == "-"
    assert lines[2][0] == "forward + backward" and lines[2][3] == "100.0"
    assert lines[3] == ["adam step", "", "2.00", "+50.0", "", ""]
    assert np.isclose(float(lines[2][4]), 3 * 0.03 / 0.004)
