from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.settings import Settings


def test_defaults() -> None:
    s = Settings()
    assert s.home == Path(".mmkg") and s.store == "memory" and s.encoder == "lit"


def test_environment_then_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMKG_HOME", str(tmp_path))
    monkeypatch.setenv("MMKG_BATCH_SIZE", "7")
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:9999")
    s = Settings.load()
    assert s.home == tmp_path and s.batch_size == 7 and s.neo4j_uri == "bolt://127.0.0.1:9999"
    assert Settings.load(batch_size=3, home=None).batch_size == 3  # None means "not given on the command line"


def test_bad_values_are_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserInputError, match="unknown store"):
        Settings.load(store="sqlite")
    monkeypatch.setenv("MMKG_BATCH_SIZE", "many")
    with pytest.raises(UserInputError, match="not a number"):
        Settings.load()
