"""The issue's claim, measured: on a synthetic session (rest / grasp / open with slow potentials), a gated decoder
separates movement from rest and, streamed through the rig's decision chain, commands the hand to move during
rest cues less than the flat decoder trained on the same windows, on the same stream (means over three seeds).
The flat decoder under a rest gate (``bmi serve --gate-rest-class rest``: the gate's rules on 1 - P(rest)) at
least halves the flat decoder's false movements and still answers most movement cues."""

from pathlib import Path

import mne
import numpy as np
import pytest

pytestmark = pytest.mark.slow

#: stated in docs/notes/gate.rst ("Tests that hold these claims"): the gate's balanced rest-vs-movement accuracy
#: on the held-out run
GATE_ACCURACY = 0.75


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from datasets.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("gate_session")
    files = write_synthetic(folder / "rec", n_subjects=1, n_runs=3, trials_per_class=12, seed=7)
    return folder, files


def train_and_export(folder: Path, files, model: dict, name: str, seed: int):
    from exports.onnx import export_run
    from pipeline.record.config import config_from_mapping
    from pipeline.train import run_training

    raw = {"data": {"files": [str(f) for f in files], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
                    "tmin": 0.5, "tmax": 2.5, "picks": {"types": ["eeg"]}, "bandpass": [8.0, 30.0], "resample": 125.0,
                    "split": {"method": "holdout", "by": "run", "test": ["03"]}, "cache_dir": str(folder / "cache")},
           "model": model, "trainer": {"enable_progress_bar": False, "target_steps": 600},
           "tracking": {"mode": "disabled"}, "runs_dir": str(folder / "runs"), "seed": seed}
    summary = run_training(config_from_mapping(raw, []), folder, progress=False)
    return summary, export_run(Path(summary["run_dir"]), out=folder / f"{name}-{seed}.onnx").path


def gate_accuracy(confusion, classes) -> float:
    c = np.asarray(confusion, dtype=float)
    r = classes.index("rest")
    moving = [i for i in range(len(classes)) if i != r]
    return (c[r, r] / c[r].sum() + c[np.ix_(moving, moving)].sum() / c[moving].sum()) / 2


#: one seed's 12 rest cues decide little (one onset is 1.7 per minute): the claim is about the mean of three
SEEDS = (0, 1, 2)


def test_gated_decoder_holds_the_hand_at_rest_more_than_the_flat_one(session):
    from exports.onnx import read_model_metadata
    from exports.runtime.closed_loop import decode_recording, score_commands

    folder, files = session
    raw = mne.io.read_raw(files[-1], preload=True, verbose="error")  # the held-out run, streamed
    cues = [(float(a["onset"]), a["description"]) for a in raw.annotations]
    scores = {"flat": [], "gated": [], "flat+rest_gate": []}
    for seed in SEEDS:
        for kind, model in (("flat", {"name": "logvar"}), ("gated", {"name": "gated"})):
            summary, path = train_and_export(folder, files, model, kind, seed)
            if kind == "gated":
                accuracy = gate_accuracy(summary["test_confusion_matrix"], summary["classes"])
                assert accuracy >= GATE_ACCURACY, f"seed {seed}: gate accuracy {accuracy:.3f} below the stated {GATE_ACCURACY}"
            data = raw.get_data(picks=read_model_metadata(path)["preprocessing"]["ch_names"]).astype(np.float32)
            decisions = decode_recording(path, data)
            scores[kind].append(score_commands(decisions, cues, 3.0))
            if kind == "flat":
                scores["flat+rest_gate"].append(score_commands(decode_recording(path, data, rest_gate="rest"), cues, 3.0))
            if kind == "gated":  # the rest command whenever the gate is closed: never a movement on a low gate
                moving = np.array([a != "hold" for a in decisions.action])
                assert not moving[decisions.gate < 0.05].any()
    flat, gated, rest_gated = ({key: np.mean([s[key] for s in scores[kind]]) for key in scores[kind][0]
                                if isinstance(scores[kind][0][key], float)} for kind in ("flat", "gated", "flat+rest_gate"))
    assert gated["movement_time_during_rest"] < flat["movement_time_during_rest"], scores
    assert gated["false_movements_per_min"] < flat["false_movements_per_min"], scores
    assert gated["movement_hit_rate"] >= 0.75, scores  # the hand still moves when asked to
    # docs/benchmarks/gate.rst, "Three seeds" (gate_three_seeds): 10.0 -> 2.2 false movements per minute, hits 0.96 -> 0.83
    assert rest_gated["false_movements_per_min"] <= flat["false_movements_per_min"] / 2, scores
    assert rest_gated["movement_hit_rate"] >= 0.75, scores
