"""Fixtures of the fault suites."""
import pytest


@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to load a dataset fails the test: a refusal must come first."""
    import nanosgm.data as data
    from nanosgm.experiments import recipe
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(recipe, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
