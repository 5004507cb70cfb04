"""The paper's Tables 4 and 5 as the package ships them (nanosgm.experiments.paper_tables) against the CSV
transcription of the paper that the project started from, committed unchanged in tests/fixtures/paper/
(so the check runs in every checkout, with nothing beside it)."""
from pathlib import Path

from nanosgm.experiments import paper_tables

TRANSCRIPTION = Path(__file__).resolve().parents[1] / "fixtures" / "paper"


def test_the_shipped_tables_are_the_papers_transcription():
    csv = paper_tables.read_paper_tables(TRANSCRIPTION)
    assert len(csv["table4"]) == len(paper_tables.TABLE4) == 8             # every experiment of the paper
    assert csv["table4"] == paper_tables.TABLE4
    assert len(csv["table5"]) == len(paper_tables.TABLE5) == 8
    for name, shipped in paper_tables.TABLE5.items():                      # the CSV spells CIFAR rows "CIFAR-10"
        assert paper_tables.lookup(csv["table5"], name) == shipped, name

