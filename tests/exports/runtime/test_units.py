"""Runtime building blocks: frame parser (property-based), ring buffer, smoothing, safety checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.runtime.buffer import RingBuffer
from exports.runtime.protocol import HEADER, FrameParser, ProtocolError, encode_data, encode_hello
from exports.runtime.safety import SafetyConfig, check_chunk, check_window
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


def test_smoothing_hysteresis_and_dwell():
    classes = ["rest", "grasp", "open"]
    s = Smoother(classes, SmoothingConfig("none", hysteresis=0.2, dwell_windows=2), ("grasp", "open"))
    assert s.update([0.2, 0.7, 0.1])[0] == "grasp"
    assert s.update([0.2, 0.35, 0.45])[0] == "grasp"  # margin 0.1 < hysteresis
    assert s.update([0.0, 0.1, 0.9])[0] == "open"  # held 2 windows, margin 0.8
    assert s.update([0.0, 0.95, 0.05])[0] == "open"  # dwell: held 1 window only
    command, confidence, level, _ = s.update([0.0, 0.95, 0.05])
    assert command == "grasp" and confidence == pytest.approx(0.95) and level == pytest.approx(0.9)
    ema = Smoother(classes, SmoothingConfig("ema", alpha=0.5, hysteresis=0.0, dwell_windows=0))
    ema.update([1.0, 0.0, 0.0])
    _, _, _, smooth = ema.update([0.0, 1.0, 0.0])
    np.testing.assert_allclose(smooth, [0.5, 0.5, 0.0])
    vote = Smoother(classes, SmoothingConfig("vote", k=3, hysteresis=0.0, dwell_windows=0))
    for p in ([0, 1, 0], [0, 0, 1], [0, 0, 1]):
        command = vote.update(p)[0]
    assert command == "open"
    with pytest.raises(ValueError, match="'smoothing'"):
        SmoothingConfig("median")


def test_safety_checks():
    cfg = SafetyConfig(saturation=1.0)
    assert check_chunk(np.array([[0.1, np.nan]]), cfg) == "nonfinite"
    assert check_chunk(np.array([[0.1, 1.5]]), cfg) == "saturated"
    assert check_chunk(np.array([[0.1, 0.2]]), cfg) is None
    assert check_window(np.array([[1.0, 2.0], [3.0, 3.0]]), cfg) == "flat"
    assert check_window(np.array([[1.0, 2.0], [3.0, 3.5]]), cfg) is None
