"""nanosgm.experiments.length: the claims judged on the seeds two protocols share at both run lengths; and
nanosgm.experiments.figures.watch_figure: the stored images' drift beside the validation FGSM watch."""
import math
import os

import numpy as np
import pytest

from nanosgm.experiments import figures, length, verdicts
from nanosgm.experiments.figures import write_figures

ARMS = ["control", "sgm:0.2"]
EPS = ["0.1", "0.2"]


def record(init, clean, fgsm, authors, epochs, watch=0, drift=None):
    """A network record with what the comparison and the figure read; ``drift(epoch)``: its input shift."""
    history = []
    for e in range(1, epochs + 1):
        h = {"epoch": e, "test_error_pct": 1.0}
        if drift is not None:
            h.update(input_shift_max=drift(e), input_shift_mean=drift(e) / 100)
        if watch and e % watch == 0:
            h.update(val_fgsm_pct={k: fgsm + e for k in EPS}, val_fgsm_authors_pct={k: authors + e for k in EPS})
        history.append(h)
    return {"init_sha256": init, "history": history, "best_epoch": epochs,
            "results": {"clean_pct": clean, "fgsm_pct": {k: fgsm for k in EPS}, "fgsm_authors_pct": {k: authors for k in EPS}}}


def protocol(epochs, gains, inits=None, runs=None, watch=0):
    """A result of the control and sgm:0.2 in which run i's arm gains ``gains[i]`` points of FGSM under both
    conventions and none of clean accuracy; ``inits``: run -> initial-weights digest (default the same for all)."""
    runs = range(len(gains)) if runs is None else runs
    nets = {}
    for i, g in zip(runs, gains):
        init = (inits or {}).get(i, f"init{i}")
        nets[f"run{i}/control"] = record(init, 99.0, 80.0, 70.0, epochs, watch)
        nets[f"run{i}/sgm:0.2"] = record(init, 99.0, 80.0 + g, 70.0 + g, epochs, watch, drift=lambda e: 0.01 * e)
    return {"arms": list(ARMS), "networks": nets,
            "config": {"dataset": "mnist", "model": "cnn", "augment": False, "epochs": epochs,
                       "eps": [float(e) for e in EPS]}}


def test_same_seeds_are_the_runs_holding_the_control_and_the_arm_and_a_different_start_is_refused():
    long, short = protocol(50, [1, 2], runs=[0, 2]), protocol(10, [1, 2, 3])
    assert length.same_seeds(long, short, "sgm:0.2") == [0, 2]
    del short["networks"]["run2/sgm:0.2"]               # run 2 lacks the arm at 10 epochs: not paired
    assert length.same_seeds(long, short, "sgm:0.2") == [0]
    other = protocol(10, [1, 2, 3], inits={2: "elsewhere"})
    with pytest.raises(ValueError, match="run 2, control: .* not start from the same weights"):
        length.same_seeds(long, other, "sgm:0.2")


def test_the_claims_are_judged_on_the_common_runs_by_the_same_rules_at_each_length():
    """Three pairs (below the rules' five, so the comparison lowers min_pairs): +0.1 points per pair at 10 epochs
    is refuted against the paper's +4.85 at eps 0.1; +3, +4, +5 at 50 epochs confirms it, a change of verdict."""
    short = protocol(10, [0.1, 0.1, 0.1, 9.0])          # run 3 exists only at 10 epochs: left out
    long = protocol(50, [3.0, 4.0, 5.0])
    cmp = length.length_claims(long, short)
    assert cmp["runs"] == {"sgm:0.2": [0, 1, 2]} and cmp["epochs"] == (50, 10) and cmp["left_out"] == []
    row = next(r for r in cmp["rows"] if r["claim"] == "FGSM accuracy rises at ε = 0.1 (Table 5)")
    assert row["short"]["diffs"] == [0.1, 0.1, 0.1] and row["short"]["verdict"] == "refuted"
    assert row["long"]["diffs"] == [3.0, 4.0, 5.0] and row["long"]["verdict"] == "confirmed"
    assert row["changed"] and row["paper_diff"] == 4.85
    clean = next(r for r in cmp["rows"] if r["convention"] is None)
    assert clean["short"]["verdict"] == clean["long"]["verdict"] == "confirmed" and not clean["changed"]
    assert {r["convention"] for r in cmp["rows"]} == {None, "inference", "authors"}


def test_fewer_than_three_shared_pairs_are_not_decidable_yet():
    cmp = length.length_claims(protocol(50, [3.0, 4.0]), protocol(10, [0.1, 0.1]))
    assert {r["long"]["verdict"] for r in cmp["rows"]} == {"not decidable yet"}
    assert cmp["rows"][0]["long"]["reason"] == f"2 of {length.MIN_LENGTH_PAIRS} pairs"


@pytest.mark.parametrize("change, match", [
    (lambda r: r["config"].update(augment=True), r"differ in augment \(True and False\)"),
    (lambda r: r["config"].update(model="dnn"), "differ in model"),
    (lambda r: r.update(blas_threads=2), "differ in blas_threads"),
    (lambda r: r["config"].update(epochs=10), "must be the longer: 10 and 10 epochs"),
])
def test_protocols_that_differ_in_more_than_their_length_are_refused(change, match):
    long = protocol(50, [1.0, 2.0, 3.0])
    change(long)
    with pytest.raises(ValueError, match=match):
        length.length_claims(long, protocol(10, [1.0, 2.0, 3.0]))


def test_what_cannot_be_compared_is_named_not_dropped():
    """An arm only one protocol has, an arm without a shared run, and claims measured at one length only."""
    long, short = protocol(50, [1.0, 2.0, 3.0]), protocol(10, [1.0, 2.0, 3.0])
    long["arms"].append("sgm:0.5")
    short["arms"].append("sgm:0.7")                      # not an arm of the long protocol: not asked about
    for r in short["networks"].values():
        del r["results"]["fgsm_authors_pct"]
    cmp = length.length_claims(long, short)
    assert "sgm:0.5: only the 50-epoch protocol has it" in cmp["left_out"]
    assert "sgm:0.2, FGSM accuracy rises at ε = 0.1 (Table 5, the authors' FGSM): measured at 50 epochs only" \
        in cmp["left_out"]
    assert {r["convention"] for r in cmp["rows"]} == {None, "inference"}
    short["arms"].append("sgm:0.5")
    assert "sgm:0.5: no run holds it and the control in both protocols" in length.length_claims(long, short)["left_out"]


def test_min_pairs_lowers_the_rules_least_number_of_pairs_and_nothing_else():
    assert verdicts.verdict_gain([5.0, 6.0], 4.85)[0] == "not decidable yet"
    assert verdicts.verdict_gain([5.0, 6.0], 4.85, min_pairs=2)[0] == "confirmed"
    assert verdicts.verdict_gain([5.0, -6.0], 4.85, min_pairs=2)[0] == "not decidable"
    assert verdicts.verdict_no_harm([-0.3, -0.2], min_pairs=2)[0] == "refuted"


def test_watch_curves_put_each_value_at_its_epoch_and_nan_elsewhere():
    result = protocol(6, [1.0, 2.0], watch=3)
    epochs, acc = figures.watch_curves(result, "sgm:0.2", "val_fgsm_pct", "0.1")
    assert list(epochs) == [1, 2, 3, 4, 5, 6]
    assert np.isnan(acc[:, [0, 1, 3, 4]]).all()
    assert acc[:, 2].tolist() == [84.0, 85.0] and acc[:, 5].tolist() == [87.0, 88.0]
    _, drift = figures.watch_curves(result, "control", "input_shift_max")
    assert np.isnan(drift).all()                        # the control's stored images never move
    assert figures.watched_eps(result) == EPS and figures.watched_eps(protocol(6, [1.0])) == []


def test_the_watch_figure_draws_every_run_of_the_drift_and_of_both_conventions():
    fig = figures.watch_figure(protocol(6, [1.0, 2.0, 3.0], watch=2))
    drift, *watch = fig.axes
    assert drift.get_title() == "Stored images' drift" and drift.get_yscale() == "log"
    assert len(drift.get_lines()) == 3                  # sgm:0.2's three runs; the control has no drift
    assert np.allclose(drift.get_lines()[0].get_ydata(), 0.01 * np.arange(1, 7))
    assert [ax.get_title() for ax in watch] == ["Validation FGSM, ε = 0.1", "Validation FGSM, ε = 0.2"]
    lines = watch[0].get_lines()
    assert len(lines) == 2 * 2 * 3                      # arms x conventions x runs
    assert all(list(line.get_xdata()) == [2, 4, 6] for line in lines)
    assert {line.get_linestyle() for line in lines} == {"-", "--"}


def test_the_watch_figure_is_refused_without_a_watch_and_written_with_the_protocols_figures(tmp_path):
    with pytest.raises(ValueError, match="--watch-fgsm"):
        figures.watch_figure(protocol(4, [1.0]))
    assert [os.path.basename(p) for p in write_figures(protocol(4, [1.0]), str(tmp_path))] == ["fig1-2_test_error.png"]
    paths = write_figures(protocol(4, [1.0], watch=2), str(tmp_path))
    watch = [p for p in paths if os.path.basename(p) == "watch_drift_and_val_fgsm.png"]
    assert len(watch) == 1 and os.path.getsize(watch[0]) > 0


def test_a_record_without_an_init_digest_is_not_taken_for_the_same_seed():
    long, short = protocol(50, [1.0]), protocol(10, [1.0])
    del long["networks"]["run0/sgm:0.2"]["init_sha256"]
    with pytest.raises(ValueError, match="run 0, sgm:0.2"):
        length.same_seeds(long, short, "sgm:0.2")
    assert not math.isnan(length.length_claims(protocol(50, [1.0]), short)["rows"][0]["long"]["median_diff"])


def test_shared_epochs_count_the_agreeing_start_of_two_histories():
    a = record("i", 99.0, 80.0, 70.0, 5, drift=lambda e: 0.01 * e)
    b = record("i", 99.0, 80.0, 70.0, 3, drift=lambda e: 0.01 * e)
    for h, lr in zip(a["history"], (1e-3, 1e-3, 1e-4, 1e-4, 1e-5)):
        h["lr"] = lr
    for h, lr in zip(b["history"], (1e-3, 1e-3, 1e-5)):
        h["lr"] = lr
    assert length.shared_epochs(a, b) == (2, 2)             # the third epoch's learning rates differ
    b["history"][1]["train_loss"] = 0.5
    a["history"][1]["seconds"] = 9.0                        # wall time is not part of the path
    assert length.shared_epochs(a, b) == (1, 2)
    cmp = length.length_claims(protocol(50, [1.0, 2.0, 3.0]), protocol(10, [1.0, 2.0, 3.0]))
    assert sorted(cmp["paths"]) == [f"run{i}/{x}" for i in range(3) for x in ARMS]
    assert set(cmp["paths"].values()) == {(10, 10)}       # these fakes' histories agree where both have epochs
