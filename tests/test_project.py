"""The project claims the import names pipeline, models, datasets, exports: they must resolve here."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["datasets", "models", "pipeline", "exports"])
def test_import_names_resolve_to_this_project(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == ROOT / name
