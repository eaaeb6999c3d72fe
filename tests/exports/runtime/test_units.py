"""Runtime building blocks: frame parser (property-based), ring buffer, smoothing, safety checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.runtime.buffer import PhaseRings, RingBuffer
from exports.runtime.protocol import HEADER, FrameParser, ProtocolError, encode_data, encode_hello
from exports.runtime.safety import FlatDetector, JumpDetector, SafetyConfig, check_chunk
from exports.runtime.smoothing import SmoothingConfig, Smoother


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=64))
def test_parser_never_fails_except_with_protocol_error(garbage, split):
    parser = FrameParser(max_payload=1024)
    try:
        for i in range(0, len(garbage), split):
            for frame in parser.feed(garbage[i : i + split]):
                assert frame.n_chans * frame.n_samples * 4 == len(frame.payload) or frame.kind == ord("H")
    except ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(0, 50), st.integers(1, 97), st.data())
def test_frames_roundtrip_in_any_split(n_chans, n_samples, split, data):
    samples = np.asarray(data.draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=n_chans * n_samples,
                                            max_size=n_chans * n_samples)), dtype=np.float32).reshape(n_chans, n_samples)
    stream = encode_hello([f"c{i}" for i in range(n_chans)], 250.0, "tok") + encode_data(samples, 12.5)
    parser, frames = FrameParser(), []
    for i in range(0, len(stream), split):
        frames += parser.feed(stream[i : i + split])
    assert frames[0].hello() == {"ch_names": [f"c{i}" for i in range(n_chans)], "sfreq": 250.0, "token": "tok"}
    np.testing.assert_array_equal(frames[1].samples(), samples)
    assert frames[1].timestamp == 12.5


def test_oversized_and_inconsistent_frames_are_refused():
    big = HEADER.pack(b"BMI1", ord("D"), 0, 1, 10_000_000, 0.0, 40_000_000)
    with pytest.raises(ProtocolError, match="exceeds the maximum"):
        FrameParser(max_payload=1 << 20).feed(big)
    wrong_len = HEADER.pack(b"BMI1", ord("D"), 0, 2, 3, 0.0, 8)
    with pytest.raises(ProtocolError, match="length"):
        FrameParser().feed(wrong_len)
    with pytest.raises(ProtocolError, match="magic"):
        FrameParser().feed(b"X" * 24)


def test_ring_buffer_keeps_the_newest_samples_in_order():
    ring = RingBuffer(2, 5)
    stream = np.arange(26, dtype=np.float32).reshape(2, 13)
    for a, b in ((0, 3), (3, 4), (4, 11), (11, 13)):
        ring.append(stream[:, a:b])
    np.testing.assert_array_equal(ring.latest(5), stream[:, -5:])
    ring.append(np.arange(20, dtype=np.float32).reshape(2, 10))  # longer than capacity
    np.testing.assert_array_equal(ring.latest(5)[0], np.arange(5, 10))
    with pytest.raises(ValueError, match="fewer than"):
        RingBuffer(2, 5).latest(1)


def test_smoothing_hysteresis_and_dwell_in_stream_time():
    classes = ["rest", "grasp", "open"]
    s = Smoother(classes, SmoothingConfig("none", hysteresis=0.2, dwell_s=0.1), ("grasp", "open"))
    assert s.update([0.2, 0.7, 0.1], t=10.00)[0] == "grasp"
    assert s.update([0.2, 0.35, 0.45], t=10.05)[0] == "grasp"  # margin 0.1 < hysteresis
    assert s.update([0.0, 0.1, 0.9], t=10.10)[0] == "open"  # held 0.1 s, margin 0.8
    assert s.update([0.0, 0.95, 0.05], t=10.15)[0] == "open"  # dwell: held 0.05 s only
    command, confidence, level, _ = s.update([0.0, 0.95, 0.05], t=10.20)
    assert command == "grasp" and confidence == pytest.approx(0.95) and level == pytest.approx(0.9)
    # a burst of windows decoded at once but a few ms apart in stream time cannot cross the dwell
    burst = Smoother(classes, SmoothingConfig("none", hysteresis=0.0, dwell_s=0.2))
    burst.update([1.0, 0.0, 0.0], t=0.0)
    assert [burst.update([0.0, 1.0, 0.0], t=0.001 * i)[0] for i in range(1, 50)] == ["rest"] * 49
    ema = Smoother(classes, SmoothingConfig("ema", alpha=0.5, hysteresis=0.0, dwell_s=0))
    ema.update([1.0, 0.0, 0.0], t=0.0)
    _, _, _, smooth = ema.update([0.0, 1.0, 0.0], t=0.05)
    np.testing.assert_allclose(smooth, [0.5, 0.5, 0.0])
    vote = Smoother(classes, SmoothingConfig("vote", k=3, hysteresis=0.0, dwell_s=0))
    for i, p in enumerate(([0, 1, 0], [0, 0, 1], [0, 0, 1])):
        command = vote.update(p, t=0.05 * i)[0]
    assert command == "open"
    with pytest.raises(ValueError, match="'smoothing'"):
        SmoothingConfig("median")


def test_every_restart_holds_for_the_dwell_before_a_movement():
    """From hold (the rest class, or "hold" without one), a movement is commanded only once it has been the
    choice for the whole dwell in stream time; a reset (any entry to the safe state) starts that again."""
    classes = ["rest", "grasp", "open"]
    grasp = [0.05, 0.9, 0.05]
    s = Smoother(classes, SmoothingConfig("ema", alpha=0.3, hysteresis=0.1, dwell_s=0.2), hold="rest")
    assert [s.update(grasp, t=10 + 0.05 * i)[0] for i in range(6)] == ["rest"] * 4 + ["grasp"] * 2
    assert s.holding is False
    s.reset()  # an emergency stop while grasping, then resume: the old average and command are gone
    assert s.update(grasp, t=20.0)[:3] == ("rest", pytest.approx(0.05), 0.0) and s.holding
    # the choice must last the whole dwell: a change of movement starts the count again
    s.reset()
    first = [s.update(p, t=30 + 0.05 * i)[0] for i, p in enumerate([grasp] * 3 + [[0.0, 0.0, 1.0]] * 8)]
    assert "grasp" not in first and first.index("open") >= 3 + 4
    # no rest class: "hold" is the command, and any class must earn the dwell
    lr = Smoother(["left", "right"], SmoothingConfig("none", dwell_s=0.1), hold="hold")
    assert [lr.update([0.9, 0.1], t=0.05 * i)[0] for i in range(4)] == ["hold", "hold", "left", "left"]
    # hold=None (a gated decoder's type smoother): the first window's choice at once, as before
    assert Smoother(classes, SmoothingConfig("none")).update(grasp, t=0.0)[0] == "grasp"


def test_safety_checks():
    cfg = SafetyConfig(saturation=1.0)
    assert check_chunk(np.array([[0.1, np.nan]]), cfg) == "nonfinite"
    assert check_chunk(np.array([[0.1, 1.5]]), cfg) == "saturated"
    assert check_chunk(np.array([[0.1, 0.2]]), cfg) is None
    # every kind of non-finite sample, alone or cancelling another in a sum, in the float32 the server feeds
    for bad in ([np.inf], [-np.inf], [np.inf, -np.inf], [np.nan, 1.0]):
        chunk = np.zeros((3, 8), dtype=np.float32)
        chunk[1, 2 : 2 + len(bad)] = bad
        assert check_chunk(chunk, SafetyConfig()) == "nonfinite"
    # the largest finite float32 values, many of them, are finite: their sum must not overflow into "nonfinite"
    assert check_chunk(np.full((306, 64), np.finfo(np.float32).max, dtype=np.float32), SafetyConfig()) is None


def feed_in_chunks(detector, data, sizes):
    """Per chunk: whether the detector found a flat stretch in it."""
    found, i = [], 0
    for n in sizes:
        found.append(detector.add(data[:, i : i + n]))
        i += n
    return found


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_a_flat_stretch_is_caught_within_one_block_of_its_length_in_any_chunking(threshold):
    """Against a brute-force reference: every stretch of flat_samples (100) ending at each sample. Noise stays
    above the threshold; one channel is stuck (or within the threshold) from sample 1037 on. The detector
    must stay silent before the stretch is 100 samples long and fire before it is 125 (one block) long."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 1400)).astype(np.float32)
    data[1, 1037:] = 0.7 + threshold * 0.9 * rng.random(363)
    ptp_ok = lambda end: (np.ptp(data[:, end - 100 : end], axis=1) <= threshold).any()  # noqa: E731
    first_flat_end = next(e for e in range(100, 1401) if ptp_ok(e))
    assert first_flat_end == 1137
    for sizes in ([10] * 140, [1] * 1400, [7, 93, 250, 1, 49] * 4 + [400], [1400]):
        found = feed_in_chunks(FlatDetector(3, 100, threshold), data, sizes)
        ends = np.cumsum(sizes)
        fired_at = ends[found.index(True)]
        assert first_flat_end <= fired_at, sizes
        assert fired_at < first_flat_end + 25 + max(sizes), sizes  # within one block (plus the chunk it ends in)
    assert not any(feed_in_chunks(FlatDetector(3, 100, threshold), data[:, :1100], [10] * 110))


def test_a_raw_step_is_a_jump_in_any_chunking_and_real_noise_is_not():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2, 3000)).astype(np.float32)
    stepped = data.copy()
    stepped[0, 2020:] += 500.0  # a 500-sigma DC step
    for sizes in ([10] * 300, [3, 17, 30] * 100):
        for signal, want in ((data, False), (stepped, True)):
            jumps, fired, checked_at, i, since_hop = JumpDetector(100.0), [], [], 0, 0
            for n in sizes:
                jumps.add(signal[:, i : i + n])
                i, since_hop = i + n, since_hop + n
                if since_hop >= 50:  # a hop
                    since_hop = 0
                    fired.append(jumps.check())
                    checked_at.append(i)
            assert sum(fired) == int(want), (sizes, want)
            if want:  # at the first hop that holds the step
                assert checked_at[fired.index(True)] == min(p for p in checked_at if p > 2020)


def test_phase_rings_hold_every_decim_th_sample_ending_at_the_newest():
    stream = np.arange(3 * 200, dtype=np.float32).reshape(3, 200)
    rings, i = PhaseRings(3, 10, 4), 0
    for n in (1, 2, 3, 5, 8, 13, 21, 34, 50, 63):
        rings.append(stream[:, i : i + n])
        i += n
        if rings.count >= 10:
            np.testing.assert_array_equal(rings.latest(10), stream[:, :i][:, ::-1][:, ::4][:, :10][:, ::-1])
    assert i == 200 and rings.count == 10
    rings.clear()
    assert rings.count == 0


def test_units_are_read_in_every_spelling_and_other_quantities_refused():
    from exports.units import UnitError, si_unit, to_si

    assert [to_si(u, "V") for u in ("V", "uV", "µV", "microvolts", "mV", "nV", "0", "-6")] == pytest.approx(
        [1, 1e-6, 1e-6, 1e-6, 1e-3, 1e-9, 1, 1e-6])
    assert to_si("fT/cm", "T/m") == pytest.approx(1e-13) and to_si("fT", "T") == pytest.approx(1e-15)
    assert si_unit("eeg") == "V" and si_unit("grad") == "T/m" and si_unit("mag") == "T"
    with pytest.raises(UnitError, match="'fT' measures T, not V"):
        to_si("fT", "V")
    with pytest.raises(UnitError, match="unknown unit 'furlongs'"):
        to_si("furlongs", "V")


def test_stream_layout_orders_renames_scales_or_refuses():
    from exports.runtime.layout import StreamDescription, StreamMismatch, plan_layout

    meta = {"preprocessing": {"ch_names": ["C3", "Cz", "C4"], "sfreq_in": 160.0},
            "channels": {"units": ["V", "V", "V"]}}
    desc = StreamDescription(["C4..", "Cz..", "C3..", "Fp1."], 160.0, ["uV"] * 4)
    layout = plan_layout(desc, meta, rename="eegbci")
    assert layout.order.tolist() == [2, 1, 0] and layout.scale.tolist() == pytest.approx([1e-6] * 3)
    assert "uV x1e-06" in layout.notes[0]
    with pytest.raises(StreamMismatch, match=r"missing channels \['C3', 'Cz', 'C4'\].*--rename eegbci"):
        plan_layout(desc, meta)
    with pytest.raises(StreamMismatch, match="The stream is in uV, the model in V"):
        plan_layout(desc, meta, rename="eegbci", on_unit_mismatch="refuse")
    assert plan_layout(desc, meta, rename="eegbci", units="V").scale.tolist() == [1, 1, 1]  # --units overrides
    silent = plan_layout(StreamDescription(["C3", "Cz", "C4"], 160.0), meta)
    assert "declares no units" in silent.notes[0]


def test_arrival_clock_follows_the_lower_envelope():
    from exports.runtime.clock import ArrivalClock

    clock = ArrivalClock(window_s=5.0)
    for k in range(100):  # a sender 1000 s ahead of us, frames every 20 ms, 1-3 ms in transit
        clock.observe(1000.0 + k * 0.02, k * 0.02 + 0.001 + 0.002 * (k % 2))
    assert clock.offset == pytest.approx(-1000.0 + 0.001)
    for k in range(100):  # a 2 s backlog of old samples arriving at once leaves the estimate alone
        clock.observe(1000.0 + 2.0 + k * 0.02, 4.0 + 0.0001 * k)
    assert clock.offset == pytest.approx(-1000.0 + 0.001)
    clock.observe(2000.0, 10.0)  # the sender's clock jumped forward: followed at once
    assert clock.to_local(2000.0) == pytest.approx(10.0)


def test_class_to_action_mapping():
    from exports.runtime.actions import level_classes, parse_action_args, plan_actions

    assert plan_actions(["rest", "grasp", "open"], {}) == {"rest": "hold", "grasp": "grasp", "open": "open"}
    actions = plan_actions(["left", "right"], parse_action_args(["left=open,right=grasp"]))
    assert actions == {"left": "open", "right": "grasp"} and level_classes(actions) == ("right", "left")
    with pytest.raises(ValueError, match=r"classes \['feet'\] have no hand action"):
        plan_actions(["rest", "feet"], {})
    with pytest.raises(ValueError, match="hand actions are"):
        plan_actions(["left"], {"left": "wave"})
    with pytest.raises(ValueError, match=r"names \['lfet'\], not classes"):
        plan_actions(["left"], {"lfet": "open"})


def test_rename_option_takes_a_rule_or_a_mapping_file(tmp_path):
    from exports.runtime.cli import _rename_rule

    assert _rename_rule("eegbci") == "eegbci" and _rename_rule(None) is None
    (tmp_path / "names.yaml").write_text("EEG 001: C3\nEEG 002: C4\n")
    (tmp_path / "names.json").write_text('{"EEG 001": "C3"}')
    assert _rename_rule(str(tmp_path / "names.yaml")) == {"EEG 001": "C3", "EEG 002": "C4"}
    assert _rename_rule(str(tmp_path / "names.json")) == {"EEG 001": "C3"}
    with pytest.raises(ValueError, match="must be one of \\['eegbci'\\] or a JSON/YAML mapping file"):
        _rename_rule("biosemi64")
    (tmp_path / "bad.yaml").write_text("- C3\n- C4\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        _rename_rule(str(tmp_path / "bad.yaml"))


def test_cue_scores_count_the_cue_period_and_the_training_window():
    from exports.runtime.cues import score_cues

    classes = ["rest", "grasp", "open"]
    cues = [(10.0, 4.0, "grasp"), (20.0, 4.0, "open")]
    # decisions every 50 ms from 9 s to 23 s; the model says grasp around 10-11.5 s, rest elsewhere,
    # while the smoothed command lags and says open from 20.6 s
    decisions = []
    for k in range(280):
        t = 9.0 + 0.05 * k
        argmax = 1 if 10.0 <= t <= 11.6 else 0
        command = "open" if t >= 20.6 else classes[argmax]
        decisions.append((t, argmax, command))
    result = score_cues(decisions, cues, classes, tmin=0.5, tmax=1.5, hop_s=0.05)
    window = result["training_window"]  # ends closest to 11.5 and 21.5: grasp right, open wrong (rest)
    assert window["n_trials"] == 2 and window["accuracy"] == 0.5 and window["balanced_accuracy"] == 0.5
    period = result["cue_period"]  # 10.5..11.5 (21 decisions, all grasp) and 20.5..21.5 (21, open from 20.6)
    assert period["n_decisions"] == 42 and period["accuracy"] == pytest.approx((21 + 19) / 42)
    assert score_cues([], cues, classes, 0.5, 1.5, 0.05)["training_window"]["n_trials"] == 0
