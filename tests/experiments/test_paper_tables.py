"""The paper's Tables 4 and 5 as the package ships them (nanosgm.experiments.paper_tables) against the CSV
transcription of the paper that the project started from, committed unchanged in tests/fixtures/paper/
(so the check runs in every checkout, with nothing beside it)."""
from pathlib import Path

import pytest

from nanosgm.experiments import paper_tables

TRANSCRIPTION = Path(__file__).resolve().parents[1] / "fixtures" / "paper"


def test_the_shipped_tables_are_the_papers_transcription():
    csv = paper_tables.read_paper_tables(TRANSCRIPTION)
    assert len(csv["table4"]) == len(paper_tables.TABLE4) == 8             # every experiment of the paper
    assert csv["table4"] == paper_tables.TABLE4
    assert len(csv["table5"]) == len(paper_tables.TABLE5) == 8
    for name, shipped in paper_tables.TABLE5.items():                      # the CSV spells CIFAR rows "CIFAR-10"
        assert paper_tables.lookup(csv["table5"], name) == shipped, name



T4_HEAD, T5_HEAD = "experiment,control,with_updates\n", "experiment,variant,eps_0.1\n"


@pytest.mark.parametrize("t4, t5, why", [
    (None, T5_HEAD, r"--paper-dir: cannot read .*table4_clean_accuracy.csv .*it needs table4_clean_accuracy.csv and "
                    r"table5_fgsm_accuracy.csv"),                      # an empty or wrong folder is not "no such row"
    ("experiment,clean\nMNIST-CNN,99\n", T5_HEAD, r"table4_clean_accuracy.csv: no column control, with_updates"),
    (T4_HEAD + "MNIST-CNN,abc,99\n", T5_HEAD, r"table4_clean_accuracy.csv line 2: 'abc' is not a percentage"),
    (T4_HEAD, T5_HEAD + "MNIST-CNN,control,101\n", r"table5_fgsm_accuracy.csv line 2: '101' is not a percentage"),
    (T4_HEAD, T5_HEAD + "MNIST-CNN,arm,50\n", r"line 2: variant must be control or updates, got 'arm'"),
    (T4_HEAD, T5_HEAD + "MNIST-CNN,control,50\n", r"MNIST-CNN needs a control and an updates row"),
    (T4_HEAD, T5_HEAD + "MNIST-CNN,control,50,60\n", r"line 2: more cells than the header has columns"),
    (T4_HEAD, "experiment,variant,eps_x\nMNIST-CNN,control,50\n", r"line 2: column 'eps_x' is not eps_<a budget>")])
def test_a_bad_transcription_is_refused_naming_the_file_and_row(tmp_path, t4, t5, why):
    for name, text in (("table4_clean_accuracy.csv", t4), ("table5_fgsm_accuracy.csv", t5)):
        if text is not None:
            (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=why):
        paper_tables.read_paper_tables(tmp_path)
