"""The examples' shared recordings and trained run: made once per docs build, reused by the later examples.

Three synthetic EEG runs of one subject (:func:`datasets.synthetic.write_synthetic`, FIF files with the cues as
annotations), the last held out for testing, and one decoder trained on the first two with the project's own
training entry point (:func:`pipeline.train.run_training`). Everything goes to a folder in the system's
temporary directory; a finished run there is reused.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml

WORK = Path(tempfile.gettempdir()) / "bmi-docs-examples"


def recordings() -> tuple[list[Path], Path]:
    """The synthetic recordings and their ``data:`` config (written once)."""
    from datasets.synthetic import write_example_config, write_synthetic

    config = WORK / "data" / "config.yaml"
    files = sorted((WORK / "data").glob("*_raw.fif"))
    if not config.is_file() or len(files) != 3:
        shutil.rmtree(WORK / "data", ignore_errors=True)
        files = write_synthetic(WORK / "data", n_subjects=1, n_runs=3, trials_per_class=10, snr=1.0, seed=1)
        write_example_config(WORK / "data", files, test_runs=["03"])
    return files, config


def trained_run(model: str = "logvar", epochs: int = 15, fresh: bool = False) -> dict:
    """Train ``model`` on the recordings (or reuse the run a previous example trained); returns its summary."""
    from pipeline.record.config import config_from_mapping
    from pipeline.train import run_training

    run_dir = WORK / "runs" / model
    if fresh or not (run_dir / "summary.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        _, config = recordings()
        data = yaml.safe_load(config.read_text())["data"]
        data["cache_dir"] = str(WORK / "cache")
        cfg = config_from_mapping(
            {"data": data, "runs_dir": str(WORK / "runs"), "name": model},
            [f"model.name={model}", f"trainer.max_epochs={epochs}", "trainer.min_steps=0", "trainer.refit=false",
             "tracking.mode=disabled", "trainer.enable_progress_bar=false"])
        return run_training(cfg, config.parent, progress=False)
    return json.loads((run_dir / "summary.json").read_text())
