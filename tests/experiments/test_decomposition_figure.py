"""The decomposition figure (nanosgm/experiments/decomposition_figure.py) and ``python -m nanosgm.decompose
PROTOCOL_DIR --figure``, drawn from a small synthetic decomposition sealed by the module's own functions: the
bars are the file's medians and median paired gains, the error bars span the networks (pairs), every arm of
the protocol is in the legend, and the command draws from the file without measuring anything."""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from nanosgm.experiments import decompose
from nanosgm.experiments.decomposition_figure import (FIGURE_READINGS, arm_values, decomposition_figure,
                                                      paired_gains)
from nanosgm.plumbing.seal import seal

EPS = (0.1, 0.2)
ARMS = ["control", "sgm:0.2", "published", "fgsm-at:0.1"]     # fgsm-at:0.1: in the protocol, never decomposed
RUNS = {"control": [0, 1, 2], "sgm:0.2": [0, 1, 2, 3], "published": [1, 2]}
READINGS = [*FIGURE_READINGS, "dropout+batch-stats"]       # one reading the figure does not draw by default


def synthetic_doc() -> dict:
    """A decomposition.json body as decompose writes it: random accuracies (%, one decimal) per network,
    reading and eps, and the summary from decompose.summarize."""
    g = np.random.default_rng(7)
    networks = {}
    for arm, runs in RUNS.items():
        for i in runs:
            readings = {r: {"fgsm_pct": {repr(e): round(float(g.uniform(0, 90)), 1) for e in EPS},
                            "zero_gradient_pct": 0.0, "saturated_pct": 0.5} for r in READINGS}
            networks[f"run{i}/{arm}"] = {"run": i, "arm": arm, "readings": readings}
    settings = {"protocol_config": {"dataset": "mnist", "model": "dnn", "augment": False}, "eps": list(EPS),
                "images": 100, "readings": {r: {} for r in READINGS}}
    return {"format": decompose.FORMAT, "settings": settings, "arms": ARMS, "networks": networks,
            "summary": decompose.summarize(networks, ARMS, READINGS, EPS)}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / decompose.OUT_NAME).write_text(json.dumps(seal(synthetic_doc())))
    return tmp_path


def bars_by_arm(ax) -> dict:
    """{arm: (heights, error-bar (low, high) per bar)} of the bar containers of one axes."""
    out = {}
    for c in ax.containers:
        if hasattr(c, "patches"):
            segments = c.errorbar.lines[2][0].get_segments()
            out[c.get_label()] = ([p.get_height() for p in c.patches],
                                  [(min(s[:, 1]), max(s[:, 1])) for s in segments])
    return out


def test_the_bars_are_the_files_medians_and_gains(folder):
    doc = decompose.load_decomposition(folder / decompose.OUT_NAME)           # sealed: the seal holds
    fig = decomposition_figure(doc)
    axes = [ax for ax in fig.axes if ax.containers]
    assert len(axes) == 2 * len(EPS)
    for (acc, gain), eps in zip(zip(axes[::2], axes[1::2]), EPS):
        assert acc.get_title().startswith(f"eps {eps:g}: accuracy")
        assert gain.get_title().startswith(f"eps {eps:g}: gain")
        ticks = [t.get_text().split("\n")[0] for t in acc.get_xticklabels()]
        assert ticks == list(FIGURE_READINGS)                                # one group per reading, in order
        drawn = bars_by_arm(acc)
        assert list(drawn) == ["control", "sgm:0.2", "published"]           # every decomposed arm, in order
        for arm, (heights, spans) in drawn.items():
            cells = [doc["summary"][arm]["readings"][r]["fgsm"][repr(eps)] for r in FIGURE_READINGS]
            assert heights == pytest.approx([c["median"] for c in cells], abs=1e-9)
            values = [arm_values(doc, arm, r, eps) for r in FIGURE_READINGS]
            assert len(values[0]) == len(RUNS[arm])
            assert np.allclose(spans, [(v.min(), v.max()) for v in values], atol=1e-6)
        gains = bars_by_arm(gain)
        assert list(gains) == ["sgm:0.2", "published"]                      # the arms beside the control
        for arm, (heights, spans) in gains.items():
            cells = [doc["summary"][arm]["readings"][r]["fgsm"][repr(eps)] for r in FIGURE_READINGS]
            assert heights == pytest.approx([c["minus_control"] for c in cells], abs=1e-9)
            d = [paired_gains(doc, arm, r, eps) for r in FIGURE_READINGS]
            assert len(d[0]) == len(set(RUNS[arm]) & set(RUNS["control"]))
            assert np.median(d[0]) == pytest.approx(cells[0]["minus_control"], abs=1e-4)
            assert np.allclose(spans, [(v.min(), v.max()) for v in d], atol=1e-6)


def test_every_arm_is_in_the_legend_in_its_figure_1_2_colour(folder):
    from nanosgm.experiments.figures import _arm_style
    doc = decompose.load_decomposition(folder / decompose.OUT_NAME)
    fig = decomposition_figure(doc)
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == len(ARMS) and all(t.startswith(f"{arm}: ") for t, arm in zip(texts, ARMS))
    assert texts[0] == "control: 3 network(s)"
    assert texts[1] == "sgm:0.2: 4 network(s), 3 pair(s) with the control"
    assert texts[2] == "published: 2 network(s), 2 pair(s) with the control"
    assert texts[3] == "fgsm-at:0.1: no network decomposed"                # named, not dropped
    for i, arm in enumerate(ARMS[:3]):            # the colour of the arm's place in the protocol, as in Figures 1-2
        for ax in fig.axes:
            for c in ax.containers:
                if c.get_label() == arm:
                    assert matplotlib.colors.same_color(c.patches[0].get_facecolor(), _arm_style(i)["color"]), arm


def test_readings_can_be_chosen_and_an_unmeasured_one_is_refused(folder):
    doc = decompose.load_decomposition(folder / decompose.OUT_NAME)
    fig = decomposition_figure(doc, readings=["inference", "dropout+batch-stats"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][1] == "dropout+\nbatch-stats"
    assert bars_by_arm(fig.axes[0])["control"][0][1] == \
        doc["summary"]["control"]["readings"]["dropout+batch-stats"]["fgsm"]["0.1"]["median"]
    with pytest.raises(ValueError, match="reading\\(s\\) no-clip\\+keras-ce are not in this decomposition"):
        decomposition_figure(doc, readings=["inference", "no-clip+keras-ce"])


def test_the_command_draws_the_png_from_the_file_and_refuses_in_one_line(folder, tmp_path, capsys):
    assert decompose.main([str(folder), "--figure"]) == 0
    png = folder / decompose.FIGURE_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == f"wrote {png}"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert decompose.main([str(empty), "--figure"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decomposition.json does not exist; run the decomposition first" in err
    assert not (empty / decompose.FIGURE_NAME).exists()
    edited = json.loads((folder / decompose.OUT_NAME).read_text())
    edited["networks"]["run0/control"]["readings"]["authors"]["fgsm_pct"]["0.1"] = 100.0
    (folder / decompose.OUT_NAME).write_text(json.dumps(edited))
    assert decompose.main([str(folder), "--figure"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was changed after it was written" in err
