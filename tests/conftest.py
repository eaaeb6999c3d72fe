"""Shared test set-up: offline tracking, headless plots, CPU-friendly threads, the shared real data."""

import importlib.util
import os
import shutil
import signal
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# A shell's `cmd &` starts the tests with SIGINT ignored, and every process they start would inherit that, so
# the Ctrl-C tests would fail; a handler (unlike "ignore") is reset to the default in a started process.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def eegmmidb_dir() -> Path:
    """The real PhysioNet EDF recordings of subject S001, beside the project; skip when absent."""
    path = SHARED_DATA / "eegmmidb" / "S001"
    if not (path / "S001R03.edf").is_file():
        pytest.skip(f"real recordings not found at {path}")
    return path


@pytest.fixture(scope="session")
def docs_tables():
    """``docs/benchmarks/tables.py``, which reads the docs' benchmark results files (``load``, ``rst_lines``)."""
    spec = importlib.util.spec_from_file_location("bmi_docs_tables", ROOT / "docs" / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (its own browser download cannot work here), for the tests of what a
    person sees: the console and the docs site. Missing, it skips, or fails where CI installed it."""
    required = os.environ.get("BMI_REQUIRE_BROWSER") == "1"  # CI installs the browser: a missing one fails there
    executable = shutil.which("chromium")
    if executable is None or importlib.util.find_spec("playwright") is None:
        message = "this test needs Debian's chromium (apt-get install chromium) and playwright (the dev extra)"
        pytest.fail(message) if required else pytest.skip(message)
    import playwright.sync_api as playwright

    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()
