"""The README and the journey pages cannot drift from the code: every ``bmi ...`` command they show runs and exits 0.

The commands of the README's sections "Journey N" run first, then those of the journey pages
(``docs/journeys/*.rst``, in the order of :data:`JOURNEY_PAGES`) that the README did not already run, in order, as a
user would type them from the project root, in a copy of the project's
``configs/`` (so ``runs/``, ``data/`` and the caches land in a temporary folder): on the synthetic recordings
that ``bmi data synth data/synthetic`` writes, and on the PhysioNet S001 files (``../shared/data``, linked in)
when they are present. Two changes keep it quick, and neither changes what a command does: training commands
get ``--set trainer.max_epochs=2`` appended (a later ``--set`` wins), and a sweep runs 2 trials instead of 20.
A placeholder ``runs/<run_id>`` stands for the first finished run. The commands that cannot run here are listed
in :data:`CANNOT_RUN_HERE` with the reason and where they are tested instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
S001 = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"
#: command prefix -> why it does not run in this test (and what tests it)
CANNOT_RUN_HERE = {
    "bmi train --resume": "continues a killed run (tests/pipeline/test_train.py kills one and resumes it)",
    "bmi train configs/train_gpu.yaml": "needs a CUDA GPU (tests/pipeline/test_gpu.py)",
    "bmi train configs/train_ddp.yaml": "needs 4 GPUs (tests/pipeline/test_ddp.py runs DDP on 2 CPU processes)",
    "bmi console": "a web server that runs until stopped (tests/exports/runtime/test_console.py)",
    "bmi serve": "needs a live LSL stream of the model's channels (tests/exports/runtime)",
    "bmi rig": "listens until stopped (tests/exports/runtime, the demo)",
    "bmi play": "streams until the file ends (tests/exports/runtime)",
    "bmi amp": "streams until stopped (tests/datasets/test_amp_recorder.py)",
    "bmi calibrate": "records a live amplifier for minutes (tests/pipeline/test_calibrate.py runs the whole day)",
    "bmi finetune sessions/": "needs a calibration day's recordings (tests/pipeline/test_small_data.py fine-tunes)",
    "bmi session unblind": "needs the logs of planned sessions (tests/exports/runtime/test_session_plan.py)",
    "bmi benchmark --dataset BNCI2014_001": "downloads BNCI2014_001 (tests/pipeline/test_benchmark.py runs the command "
                                            "on MOABB's fake dataset)",
    "bmi rehearse": "needs a held-out cued recording's config (tests/exports/runtime/test_gate.py, test_demo.py)",
}
JOURNEY_PAGES = ("train_and_compare", "deploy", "calibrate")
NEEDS_S001 = ("train_eegmmidb", "eegmmidb_real", "runs/s001")
TRAINING = ("bmi train", "bmi cv", "bmi sweep", "bmi finetune")


def journey_commands(text: str) -> list[str]:
    """The ``bmi`` lines of the fenced shell blocks of the sections "Journey N", in order."""
    commands = []
    for section in re.split(r"^## ", text, flags=re.M):
        if not section.startswith("Journey"):
            continue
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", section, flags=re.S):
            commands += bmi_lines(block)
    return commands


def bmi_lines(block: str) -> list[str]:
    """The block's ``bmi`` commands, each with its continuation lines (a line ending in ``\\``) joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("bmi ")]


def page_commands(text: str) -> list[str]:
    """The ``bmi`` lines of a journey page's ``.. code-block:: bash`` blocks, in order."""
    commands = []
    for block in re.findall(r"^\.\. code-block:: (?:bash|sh|shell|console)\n((?:\n|[ \t]+.*\n)*)", text, flags=re.M):
        commands += bmi_lines(block)
    return commands


def walked_commands() -> list[str]:
    """The README's journey commands, then the journey pages' commands the README did not already show."""
    commands = journey_commands((ROOT / "README.md").read_text())

    def words(command: str) -> tuple[str, ...]:  # the command without its comment
        return tuple(shlex.split(command, comments=True))

    seen = {words(command) for command in commands}
    for page in JOURNEY_PAGES:
        for command in page_commands((ROOT / "docs" / "journeys" / f"{page}.rst").read_text()):
            if words(command) not in seen:
                seen.add(words(command))
                commands.append(command)
    return commands


def prepared(command: str) -> list[str]:
    args = shlex.split(command, comments=True)
    if command.startswith(TRAINING):
        args += ["--set", "trainer.max_epochs=2"]
    if "--trials" in args:
        args[args.index("--trials") + 1] = "2"
    return args


def test_the_readme_lists_the_commands_it_documents():
    commands = journey_commands((ROOT / "README.md").read_text())
    for expected in ("bmi train configs/train_eegmmidb.yaml --name s001", "bmi cv configs/demo.yaml", "bmi compare",
                     "bmi export runs/<run_id>", "bmi data synth data/synthetic", "bmi serve", "bmi calibrate"):
        assert any(c.startswith(expected) for c in commands), expected


def test_every_walked_command_parses():
    """Quick guard for the slow walk: each shown command splits as a shell would and its parser accepts it."""
    from pipeline.cli import build_parser

    parser = build_parser()
    for command in walked_commands():
        args = shlex.split(command.replace("<run_id>", "run"), comments=True)
        assert args[0] == "bmi", command
        try:
            parser.parse_args(args[1:])
        except SystemExit as exit:
            pytest.fail(f"the parser refuses {command!r} (exit {exit.code})")


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 200, f"the README has {len(lines)} lines; the manual belongs in docs/"
    first_block = re.search(r"```bash\n(.*?)```", readme, flags=re.S).group(1).splitlines()
    assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]
    assert "not a medical device" in readme.lower()
    assert "make docs" in readme
    for name in ("pipeline", "models", "datasets", "exports"):
        assert f"`{name}`" in readme, name


def test_every_journey_page_has_commands_and_the_readme_links_the_safety_page():
    for page in JOURNEY_PAGES:
        assert page_commands((ROOT / "docs" / "journeys" / f"{page}.rst").read_text()), page
    assert (ROOT / "docs" / "safety.rst").is_file() and "docs/safety.rst" in (ROOT / "README.md").read_text()


def test_the_training_journey_quotes_the_shipped_config_by_inclusion():
    page = (ROOT / "docs" / "journeys" / "train_and_compare.rst").read_text()
    assert ".. literalinclude:: ../../configs/train_eegmmidb.yaml" in page
    assert (ROOT / "configs" / "train_eegmmidb.yaml").is_file()


def test_every_results_file_is_complete_and_shown_on_a_benchmark_page():
    sys.path.insert(0, str(ROOT / "docs" / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.remove(str(ROOT / "docs" / "benchmarks"))
    shown = set()
    for page in (ROOT / "docs" / "benchmarks").glob("*.rst"):
        shown |= set(re.findall(r"^\.\. results-table:: (\S+)", page.read_text(), flags=re.M))
    results = {path.stem for path in tables.RESULTS.glob("*.json")}
    assert results, "no results files"
    assert shown == results, f"shown but missing: {shown - results}; never shown: {results - shown}"
    for name in sorted(results):
        data = tables.load(name)
        assert data["benchmark"] == name and data["rows"] and data["date"] and data["command"], name
        assert any(line.startswith(".. list-table::") for line in tables.rst_lines(data))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_journey_command_runs(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "configs", project / "configs")
    if S001.is_dir():
        (tmp_path / "shared" / "data").mkdir(parents=True)
        (tmp_path / "shared" / "data" / "eegmmidb").symlink_to(S001.parent)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", MPLBACKEND="Agg", PYTHONPATH=str(ROOT),
               COLUMNS="100")
    ran, skipped, failed = [], [], []
    for command in walked_commands():
        reason = next((why for prefix, why in CANNOT_RUN_HERE.items() if command.startswith(prefix)), None)
        if reason is None and not S001.is_dir() and any(key in command for key in NEEDS_S001):
            reason = f"needs the S001 recordings ({S001})"
        if reason:
            skipped.append(f"{command}  [{reason}]")
            continue
        if "<run_id>" in command:
            first = sorted(p.parent for p in (project / "runs").glob("**/summary.json"))[0]
            command = command.replace("runs/<run_id>", str(first.relative_to(project)))
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", *prepared(command)[1:]], cwd=project, env=env,
                             capture_output=True, text=True, timeout=600)
        (ran if out.returncode == 0 else failed).append(command)
        if out.returncode != 0:
            failed[-1] += f"\n  exit {out.returncode}: {out.stderr.strip()[-1500:]}"
    print("ran:\n  " + "\n  ".join(ran) + "\nnot run here:\n  " + "\n  ".join(skipped))
    assert not failed, "README commands that fail:\n" + "\n".join(failed)
    assert len(ran) >= (12 if S001.is_dir() else 6), ran
