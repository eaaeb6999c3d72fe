"""The server's gate for gated decoders: the rest command while the gate is below its threshold, its own
hysteresis and dwell in stream time, the level from the gate; the gate in the decision message and the log.
The same rules as a rest gate on any decoder with a rest class (``--gate-rest-class``: the gate is 1 - P(rest))."""

import csv
import json
import time

import numpy as np
import pytest
import torch

from exports.runtime.smoothing import GateConfig, GatedSmoother, SmoothingConfig

from runtime_helpers import bmi, connect, free_port, send_recording, wait

CLASSES = ["rest", "grasp", "open"]


def joint(g, q_grasp):
    return np.array([1 - g, g * q_grasp, g * (1 - q_grasp)])


def smoother(**gate):
    cfg = SmoothingConfig(method="none", hysteresis=0.0, dwell_s=0.0)
    return GatedSmoother(CLASSES, cfg, GateConfig("rest", **gate), level_pair=("grasp", "open"))


def test_rest_while_the_gate_is_below_its_threshold_whatever_the_type_says():
    s = smoother(threshold=0.6, hysteresis=0.1, dwell_s=0.0)
    for i, g in enumerate([0.1, 0.5, 0.65, 0.59]):  # 0.65: above the threshold, below its opening level 0.7
        command, _, level, smooth = s.update(joint(g, 0.95), i * 0.05, g)
        assert (command, level) == ("rest", 0.0)
        assert smooth[0] == pytest.approx(1 - g)
    command, confidence, level, _ = s.update(joint(0.8, 0.95), 0.2, 0.8)
    assert command == "grasp" and confidence == pytest.approx(0.8 * 0.95)
    assert level == pytest.approx((0.8 - 0.6) / 0.4)  # the level from the gate, + for grasp
    assert s.update(joint(0.65, 0.95), 0.25, 0.65)[0] == "grasp"  # inside the hysteresis band: stays open
    assert s.update(joint(0.59, 0.95), 0.30, 0.59)[0] == "rest"  # below the threshold: closes at once


def test_the_gate_opens_only_after_its_dwell_in_stream_time():
    s = smoother(threshold=0.5, hysteresis=0.0, dwell_s=0.3)
    for _ in range(20):  # a burst of windows at one stream time cannot cross the dwell
        assert s.update(joint(0.9, 0.1), 1.0, 0.9)[0] == "rest"
    assert s.update(joint(0.9, 0.1), 1.2, 0.9)[0] == "rest"
    command, _, level, _ = s.update(joint(0.9, 0.1), 1.3, 0.9)
    assert command == "open" and level == pytest.approx(-0.8)  # - for open
    s.update(joint(0.2, 0.1), 1.35, 0.2)  # closed; the dwell starts again
    assert s.update(joint(0.9, 0.1), 1.4, 0.9)[0] == "rest"
    s.update(joint(0.3, 0.1), 1.5, 0.3)  # a dip below the opening level restarts the count
    assert s.update(joint(0.9, 0.1), 1.6, 0.9)[0] == "rest"
    assert s.update(joint(0.9, 0.1), 1.9, 0.9)[0] == "open"


def test_type_threshold_and_gate_smoothing():
    s = smoother(threshold=0.5, hysteresis=0.0, dwell_s=0.0, type_threshold=0.7)
    assert s.update(joint(0.9, 0.6), 0.0, 0.9)[0] == "rest"  # open gate, unsure type: the hand rests
    assert s.update(joint(0.9, 0.8), 0.05, 0.9)[0] == "grasp"
    ema = GatedSmoother(CLASSES, SmoothingConfig(method="ema", alpha=0.5, hysteresis=0.0, dwell_s=0.0),
                        GateConfig("rest", threshold=0.5, hysteresis=0.0, dwell_s=0.0))
    ema.update(joint(0.0, 0.9), 0.0, 0.0)
    assert ema.update(joint(0.9, 0.9), 0.05, 0.9)[0] == "rest" and ema.gate == pytest.approx(0.45)
    assert ema.update(joint(0.9, 0.9), 0.10, 0.9)[0] == "grasp" and ema.gate == pytest.approx(0.675)


@pytest.mark.parametrize("params, message", [
    ({"threshold": 1.0}, r"'gate-threshold' \(1.0\) must be in \[0, 1\)"),
    ({"threshold": 0.95, "hysteresis": 0.1}, r"could never open"),
    ({"dwell_s": -0.1}, r"'gate-dwell' \(-100 ms\) must be >= 0"),
])
def test_bad_gate_settings_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        GateConfig("rest", **params)


@pytest.fixture(scope="module")
def constant_gate_model(exported, tmp_path_factory):
    """A gated decoder whose gate says 0.8 (movement) for every window, its type decoder trained by nobody,
    exported with the trained run's data description: a real ONNX file with the gate output."""
    import models
    from exports.onnx import embed_metadata, gate_metadata
    from exports.torch_export import export_onnx

    meta = json.loads(json.dumps(exported.metadata))
    n_chans, n_times = meta["io"]["input_shape"][1:]
    torch.manual_seed(0)
    net = models.build("gated", n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=meta["sfreq"],
                       rest_index=meta["classes"].index("rest"), gate={"name": "logvar", "n_filters": 2},
                       type={"name": "logvar", "n_filters": 2}).eval()
    with torch.no_grad():
        net.gate.classifier.weight.zero_()
        net.gate.classifier.bias.copy_(torch.tensor([0.0, float(np.log(2.0)), float(np.log(2.0))]))  # g = 0.8
    path = export_onnx(net, n_chans, n_times, tmp_path_factory.mktemp("gated") / "gated.onnx")
    meta["io"]["outputs"] = ["logits", "probabilities", "gate"]
    meta["gate"] = gate_metadata(net, meta["classes"])
    embed_metadata(path, meta)
    return path


def test_the_server_holds_the_hand_while_the_gate_is_below_threshold(constant_gate_model, recording_array, tmp_path):
    """A real `bmi serve` on a real TCP stream: every decision carries the gate (0.8 here) and the rest class
    is 1 - gate, so a movement class always beats rest (a flat smoother would move the hand); with the gate's
    threshold at 0.85 every decision is the rest command and the hand holds."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(12 * sfreq)]
    port, log = free_port(), tmp_path / "session.csv"
    server = bmi("serve", str(constant_gate_model), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--gate-threshold", "0.85", "--gate-hysteresis", "0.05",
                 "--log", str(log), "--duration", "7", "--no-status", "--stale-ms", "5000")
    with connect(port) as sock:
        send_recording(sock, data, ch_names, sfreq, [64], pace=0.005)
        time.sleep(1.0)
    code, out, err = wait(server, 30)
    assert code == 0, err
    rows = list(csv.DictReader(log.open()))
    decisions = [r for r in rows if r["type"] == "decision"]
    assert len(decisions) > 20
    for row in decisions:
        probs = json.loads(row["probabilities"])
        assert float(row["gate"]) == pytest.approx(0.8, abs=1e-5)
        assert probs["rest"] == pytest.approx(1 - float(row["gate"]), abs=1e-5)
        assert max(probs["grasp"], probs["open"]) > probs["rest"]
        assert (row["command"], row["action"], float(row["level"])) == ("rest", "hold", 0.0)
    assert all(r["gate"] == "" for r in rows if r["type"] != "decision")
    stats = json.loads(out.splitlines()[-1])
    assert stats["gate"]["threshold"] == 0.85 and stats["gate"]["dwell_s"] == 0.2


def test_inspect_describes_the_gate(constant_gate_model):
    from exports.cli import describe
    from exports.onnx import read_model_metadata

    text = describe(read_model_metadata(constant_gate_model))
    assert "-> logits, probabilities, gate" in text
    assert "gate         rest (rest) below 0.7; opens at 0.8 held 200 ms; type threshold 0" in text


def test_gate_options_need_a_gated_model(exported, tmp_path):
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{free_port()}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--gate-threshold", "0.7", "--no-status")
    code, _, err = wait(server, 30)
    assert code != 0 and "--gate-threshold: the model has no gate; add --gate-rest-class CLASS" in err


def test_which_gate_is_in_force():
    import inspect

    from exports.runtime.smoothing import REST_GATE_DEFAULTS, gate_in_force
    from models.gated import GatedDecoder

    flat = {"classes": CLASSES}
    gated = {"classes": CLASSES, "gate": {"output": "gate", "rest_class": "rest", "threshold": 0.6, "hysteresis": 0.05,
                                          "dwell_s": 0.1, "type_threshold": 0.0}}
    assert gate_in_force(flat, None, {}) is None
    assert gate_in_force(gated, None, {"dwell_s": 0.4}) == GateConfig("rest", 0.6, 0.05, 0.4)
    assert gate_in_force(flat, "rest", {"threshold": 0.8}) == GateConfig("rest", 0.8, 0.1, 0.2)
    gated_net = GatedDecoder(n_chans=4, n_times=100, n_outputs=3, sfreq=100.0)  # a rest gate starts where it does
    assert REST_GATE_DEFAULTS == {k: getattr(gated_net, f"gate_{k}") for k in ("threshold", "hysteresis", "dwell_s")}
    assert inspect.signature(GatedDecoder).parameters["gate_hysteresis"].default == REST_GATE_DEFAULTS["hysteresis"]
    with pytest.raises(ValueError, match=r"--gate-rest-class \('rest'\): the model has its own gate"):
        gate_in_force(gated, "rest", {})
    with pytest.raises(ValueError, match=r"--gate-rest-class \('idle'\) is not one of the classes"):
        gate_in_force(flat, "idle", {})
    with pytest.raises(ValueError, match=r"--gate-dwell-ms: the model has no gate"):
        gate_in_force(flat, None, {"dwell_s": 0.3})


@pytest.mark.parametrize("classes, threshold", [(["rest", "move"], 0.567), (CLASSES, 0.7),
                                                (["rest", "grasp", "open", "pinch", "point"], 0.789)])
def test_the_rest_gate_default_is_not_opened_by_the_movement_prior(classes, threshold):
    """A decoder trained on balanced classes gives a window with no evidence 1 - P(rest) = k / (k + 1); the rest
    gate's default opens where the odds are twice that (0.8 for grasp / open), never at the prior itself."""
    from exports.runtime.smoothing import gate_in_force, gate_prior_warning, movement_prior

    from models.gated import GatedDecoder

    gate = gate_in_force({"classes": classes}, "rest", {})
    assert gate.threshold == pytest.approx(threshold, abs=1e-3)
    # a gated decoder trained on these classes starts from the same threshold
    assert GatedDecoder(n_chans=4, n_times=100, n_outputs=len(classes), sfreq=100.0).gate_threshold == gate.threshold
    prior_odds, opening = len(classes) - 1, gate.threshold + gate.hysteresis
    assert opening / (1 - opening) == pytest.approx(2 * prior_odds, rel=1e-2)
    assert gate_prior_warning(gate, classes) is None
    # the two-class default (opening 0.8) on four movement classes sits at their prior 0.8: warned
    low = gate_in_force({"classes": classes}, "rest", {"threshold": 0.7})
    warned = gate_prior_warning(low, classes)
    assert (warned is not None) == (movement_prior(classes) >= 0.8 - 1e-9)
    if warned:
        assert "a window with no evidence of movement opens it" in warned and "raise --gate-threshold" in warned


@pytest.fixture(scope="module")
def constant_flat_model(exported, tmp_path_factory):
    """A flat decoder (no gate output) giving P(rest) = 0.2 and 0.4 to each movement for every window: a real
    ONNX file with the trained run's data description."""
    return logvar_file(exported, tmp_path_factory.mktemp("flat") / "flat.onnx", weights={},
                       biases={c: float(np.log(2.0)) * (c != "rest") for c in CLASSES})


def logvar_file(exported, path, weights, biases):
    """A 2-filter log-variance decoder with random spatial filters (seed 0) and the given classifier (per class:
    the weights of the two filters' log variances, default 0, and the bias), as an ONNX file carrying the trained
    run's metadata."""
    import models
    from exports.onnx import embed_metadata
    from exports.torch_export import export_onnx

    meta = json.loads(json.dumps(exported.metadata))
    n_chans, n_times = meta["io"]["input_shape"][1:]
    torch.manual_seed(0)
    net = models.build("logvar", n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=meta["sfreq"], n_filters=2).eval()
    with torch.no_grad():
        net.classifier.weight.copy_(torch.tensor([weights.get(c, [0.0, 0.0]) for c in meta["classes"]]))
        net.classifier.bias.copy_(torch.tensor([biases.get(c, 0.0) for c in meta["classes"]]))
    path = export_onnx(net, n_chans, n_times, path)
    embed_metadata(path, meta)
    return path


def test_a_rest_gate_holds_a_flat_decoder_until_its_movement_probability_opens_it(constant_flat_model, recording_array):
    """Through the rig's decision chain: ungated, the flat decoder commands a movement on every window after the
    first dwell from hold (0.4 beats rest's 0.2); with a rest gate the hand holds while 1 - P(rest) = 0.8 is below the threshold, and
    moves once it stays above the opening level for the dwell."""
    from exports.onnx import read_model_metadata
    from exports.runtime.closed_loop import decode_recording

    data, ch_names, sfreq, _ = recording_array
    meta = read_model_metadata(constant_flat_model)
    data = data[[ch_names.index(c) for c in meta["preprocessing"]["ch_names"]], : int(8 * sfreq)]
    every = decode_recording(constant_flat_model, data)
    first = every.reason.index("")  # the hops before it waited for the filters and the amplitude check, holding
    assert first > 0 and set(every.reason[:first]) <= {"settling", "checking_amplitude"}
    assert set(every.action[:first]) == {"hold"} and not any(every.reason[first:])
    plain = every.decided()
    dwell = SmoothingConfig().dwell_s
    moved = np.array([a != "hold" for a in plain.action])
    assert len(plain.t) > 20 and np.isnan(plain.gate).all()
    assert not moved[plain.t < plain.t[0] + dwell - 1e-9].any() and moved[plain.t >= plain.t[0] + dwell - 1e-9].all()
    held = decode_recording(constant_flat_model, data, rest_gate="rest", gate={"threshold": 0.85, "hysteresis": 0.05}).decided()
    assert set(held.command) == {"rest"} and np.allclose(held.gate, 0.8, atol=1e-5)
    opens = decode_recording(constant_flat_model, data, rest_gate="rest", gate={"threshold": 0.6, "dwell_s": 0.5}).decided()
    moving = np.array([a != "hold" for a in opens.action])
    first = opens.t[np.argmax(moving)]
    assert not moving[opens.t < opens.t[0] + 0.5].any() and moving[opens.t >= first].all()


def test_the_server_applies_a_rest_gate_to_a_flat_decoder(constant_flat_model, recording_array, tmp_path):
    """A real `bmi serve` on a real TCP stream with --gate-rest-class: every decision carries the gate 1 - P(rest)
    and, below the threshold, is the rest command, though a movement class beats rest in every window."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(12 * sfreq)]
    port, log = free_port(), tmp_path / "session.csv"
    server = bmi("serve", str(constant_flat_model), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--gate-rest-class", "rest", "--gate-threshold", "0.85",
                 "--gate-hysteresis", "0.05", "--log", str(log), "--duration", "7", "--no-status", "--stale-ms", "5000")
    with connect(port) as sock:
        send_recording(sock, data, ch_names, sfreq, [64], pace=0.005)
        time.sleep(1.0)
    code, out, err = wait(server, 30)
    assert code == 0, err
    decisions = [r for r in csv.DictReader(log.open()) if r["type"] == "decision"]
    assert len(decisions) > 20
    for row in decisions:
        probs = json.loads(row["probabilities"])
        assert max(probs["grasp"], probs["open"]) > probs["rest"]
        assert float(row["gate"]) == pytest.approx(1 - probs["rest"], abs=1e-5)
        assert (row["command"], row["action"], float(row["level"])) == ("rest", "hold", 0.0)
    stats = json.loads(out.splitlines()[-1])
    assert stats["gate"] == {"rest_class": "rest", "threshold": 0.85, "hysteresis": 0.05, "dwell_s": 0.2,
                             "type_threshold": 0.0, "source": "rest_class"}


def test_rehearse_scores_a_gate_against_the_cues(constant_flat_model, recording_array, tmp_path):
    """`bmi rehearse` on a cued recording with the flat decoder that always prefers a movement (P(rest) = 0.2):
    ungated it moves the hand in every rest decision and answers exactly the cues of the movement class it
    prefers; a rest gate that cannot open (0.85 + 0.05 above the gate's 0.8) never moves it; one that opens at
    0.7 moves it from its first dwell on."""
    import mne
    import yaml

    from exports.onnx import read_model_metadata

    _, _, _, path = recording_array
    config = tmp_path / "cued.yaml"
    config.write_text(yaml.safe_dump({"data": {"files": [str(path)], "events": {c: c for c in CLASSES}}}))
    classes = read_model_metadata(constant_flat_model)["classes"]
    preferred = next(c for c in classes if c != "rest")  # the first of the two tied movement classes
    raw = mne.io.read_raw(path, verbose="error")
    decisions = tmp_path / "decisions.csv"

    def rehearse(*options):
        proc = bmi("rehearse", str(constant_flat_model), "--data", str(config), "--json", *options)
        code, out, err = wait(proc, 120)
        assert code == 0, err
        return json.loads(out.splitlines()[-1])

    plain = rehearse("--decisions", str(decisions))["rows"][0]
    # the cues scored: from the first decided window (the filters settled, the amplitude checked) to the data's end
    first = next(float(r["t_window_end"]) for r in csv.DictReader(decisions.open()) if not r["reason"])
    cues = [a["description"] for a in raw.annotations if first <= a["onset"] - raw.first_time
            and a["onset"] - raw.first_time + a["duration"] <= raw.times[-1]]
    share = cues.count(preferred) / sum(c != "rest" for c in cues)
    assert 0 < share < 1 and plain["movement_cues"] == sum(c != "rest" for c in cues)
    assert plain["movement_time_during_rest"] == 1.0 and plain["movement_hit_rate"] == pytest.approx(share)
    assert plain["rest_cues"] > 0 and plain["rest_cues_moved_in"] == plain["rest_cues"]  # the hand moved in every one
    result = rehearse("--gate-rest-class", "rest", "--gate-threshold", "0.85,0.6", "--gate-dwell-ms", "200",
                      "--min-hits", f"{share - 0.01:.3f}")
    closed, opens = result["rows"]
    # the closed gate has no false movement but answers no cue: the open one is chosen, with the options to serve it
    assert result["chosen"] == opens
    assert result["serve_options"] == ["--gate-rest-class", "rest", "--gate-threshold", "0.6", "--gate-dwell-ms", "200"]
    assert closed["gate"] == {"threshold": 0.85, "dwell_s": 0.2}
    assert (closed["false_movements_per_min"], closed["movement_time_during_rest"], closed["movement_hit_rate"]) == (0, 0, 0)
    assert closed["rest_cues_moved_in"] == 0 and closed["rest_cues"] == plain["rest_cues"]
    assert opens["movement_time_during_rest"] > 0.95 and opens["movement_hit_rate"] == pytest.approx(share)
    proc = bmi("rehearse", str(constant_flat_model), "--data", str(config), "--gate-threshold", "0.7")
    code, _, err = wait(proc, 120)
    assert code != 0 and "--gate-threshold: the model has no gate; add --gate-rest-class CLASS" in err
    proc = bmi("rehearse", str(constant_flat_model), "--data", str(config), "--gate-rest-class", "rest",
               "--gate-threshold", "0.5,0.7")  # 0.5 opens at 0.6, below the movement prior 2/3
    code, out, err = wait(proc, 120)
    assert code == 0, err
    assert out.count("warning: the gate opens at 0.6 (threshold + hysteresis), not above 0.667") == 1


@pytest.fixture(scope="module")
def flickering_flat_model(exported, tmp_path_factory):
    """A flat decoder whose command follows the sign of the difference of two random spatial filters' log
    variances (grasp when positive, open when negative, rest never): a command that flickers with the
    background's fluctuations."""
    return logvar_file(exported, tmp_path_factory.mktemp("flicker") / "flicker.onnx",
                       weights={"grasp": [5.0, -5.0], "open": [-5.0, 5.0]}, biases={})


def test_rehearse_tries_ema_weights_as_the_server_would_smooth(flickering_flat_model, recording_array, tmp_path):
    """`bmi rehearse --ema-alpha` on a decoder whose command flickers: one row per weight, each scored exactly as
    the rig's decision chain with that weight scores the same recording; heavier smoothing (a smaller weight)
    switches the command less often, so fewer movement onsets fall in the rest cues; the chosen row's `bmi serve`
    options carry its weight."""
    import yaml

    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from exports.runtime.closed_loop import decide, decode_windows, late_seconds, score_commands
    from pipeline.metrics import wilson_interval
    from pipeline.rehearse import read_cued

    _, _, _, path = recording_array
    meta = read_model_metadata(flickering_flat_model)
    data = {"files": [str(path)], "events": {c: c for c in meta["classes"]}}
    config = tmp_path / "cued.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    proc = bmi("rehearse", str(flickering_flat_model), "--data", str(config), "--json", "--ema-alpha", "1,0.05",
               "--min-hits", "0")
    code, out, err = wait(proc, 120)
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    rows = result["rows"]
    assert [r["ema_alpha"] for r in rows] == [1, 0.05]
    _, signals, cues, cue_s, _ = read_cued([path], from_mapping(DataConfig, data, "data"), meta["preprocessing"]["ch_names"])[0]
    windows = decode_windows(flickering_flat_model, signals)
    for row in rows:
        expected = score_commands(decide(windows, smoothing=SmoothingConfig(alpha=row["ema_alpha"])), cues, cue_s,
                                  from_s=windows.first_decoded_t, late_s=late_seconds(meta))
        for key in ("false_movements_per_min", "movement_time_during_rest", "movement_hit_rate", "time_to_correct_s",
                    "movement_time_between_cues", "movement_time_uncued"):
            assert row[key] == pytest.approx(expected[key]), (row["ema_alpha"], key)
        assert (row["gaps"], row["gaps_moved_in"]) == (expected["n_gaps"], expected["counts"]["gaps_moved_in"])
        counts = expected["counts"]
        assert row["hits_interval"] == pytest.approx(wilson_interval(counts["hits"], counts["movement_cues"]))
    raw, smoothed = rows
    assert raw["movement_time_during_rest"] == smoothed["movement_time_during_rest"] == 1.0  # never rest
    assert raw["false_onsets"] > smoothed["false_onsets"], (raw["false_onsets"], smoothed["false_onsets"])
    # a model without a gate: the chosen setting is only its weight (least moving without a cue ties: fewer onsets)
    assert result["chosen"]["ema_alpha"] == 0.05 and result["serve_options"] == ["--ema-alpha", "0.05"]
    proc = bmi("rehearse", str(flickering_flat_model), "--data", str(config), "--ema-alpha", "0.3,1.5")
    code, _, err = wait(proc, 120)
    assert code != 0 and "'ema-alpha' (1.5) must be in (0, 1]" in err


def test_rehearse_leaves_out_a_cue_its_recording_cuts(constant_flat_model, recording_array):
    """A recording that ends part-way through a cue: that cue, and the one after it, are not scored (as the demo
    leaves out its stream's cut last cue) and every whole cue still is; no recording at all is refused."""
    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from pipeline.rehearse import read_cued, rehearse

    _, _, sfreq, path = recording_array
    meta = read_model_metadata(constant_flat_model)
    data = from_mapping(DataConfig, {"files": [str(path)], "events": {c: c for c in meta["classes"]}}, "data")
    (recording,) = read_cued([path], data, meta["preprocessing"]["ch_names"])
    _, signals, cues, cue_s, _ = recording
    cut_at = cues[-2][0] + cue_s / 2  # half-way through the last cue but one
    cut = recording._replace(data=signals[:, : int(cut_at * sfreq)])
    (whole,) = rehearse(constant_flat_model, [recording], [{}])
    (part,) = rehearse(constant_flat_model, [cut], [{}])

    def scored(row):
        return row["rest_cues"] + row["movement_cues"]

    assert scored(whole) + whole["cues_unscored"] == len(cues)  # the whole recording ends 2 s after its last cue
    assert part["cues_unscored"] == whole["cues_unscored"] + 2 and scored(part) == scored(whole) - 2
    assert part["gaps"] == whole["gaps"] - 1  # the gap before the cut cue is scored, the one after it is gone
    with pytest.raises(ValueError, match="at least one cued recording"):
        rehearse(constant_flat_model, [], [{}])


def test_rehearse_chooses_the_gate_that_moves_least_at_rest_and_still_answers_the_cues():
    from pipeline.rehearse import choose_gate

    def row(threshold, false, moving, hits, latency=1.5, uncued=None):
        return {"gate": {"threshold": threshold}, "false_movements_per_min": false, "movement_time_during_rest": moving,
                "movement_time_uncued": moving if uncued is None else uncued,  # no gaps: the rest cues alone
                "movement_hit_rate": hits, "time_to_correct_s": latency}

    rows = [row(0.5, 9.0, 0.2, 0.95), row(0.7, 3.0, 0.05, 0.80), row(0.75, 3.0, 0.03, 0.78),
            row(0.8, 1.0, 0.01, 0.60), row(0.9, 0.0, 0.0, 0.0, None)]
    assert choose_gate(rows, 0.75)["gate"] == {"threshold": 0.75}  # less moving at rest, the same false movements
    onset_free = dict(row(0.72, 0.0, 0.2, 0.9), gate={"threshold": 0.72})  # moving through a rest cue, no onset in it
    assert choose_gate([*rows, onset_free], 0.75)["gate"] == {"threshold": 0.75}
    # still in the rest cues but slow to let go after a movement cue: the gaps between cues count too
    slow_release = row(0.78, 2.0, 0.02, 0.8, uncued=0.06)
    assert choose_gate([*rows, slow_release], 0.75)["gate"] == {"threshold": 0.75}
    assert choose_gate([*rows, dict(slow_release, movement_time_uncued=0.025)], 0.75)["gate"] == {"threshold": 0.78}
    assert choose_gate(rows, 0.9)["gate"] == {"threshold": 0.5}
    assert choose_gate(rows, 0.5)["gate"] == {"threshold": 0.8}
    assert choose_gate(rows, 0.96) is None
    with pytest.raises(ValueError, match="must be a fraction of the movement cues"):
        choose_gate(rows, 75)
