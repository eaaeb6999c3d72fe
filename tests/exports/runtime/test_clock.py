"""Clocks are checked, not trusted: the TCP offset estimate survives pauses (a backlog after one is old), and a
sender clock that jumps, or timestamps ahead of ours, are clock faults (safe, filters restarted, then fresh data)."""

import json
import time

import numpy as np
import pytest

from exports.runtime.clock import ArrivalClock
from exports.runtime.protocol import encode_data, encode_hello

from runtime_helpers import bmi, connect, free_port, wait
from test_safety import UDPListener

FRAME_S = 0.02
OFFSET = 1000.0  # local minus sender time in the unit tests


def live(clock, t_from, t_to, offset=OFFSET, delay=0.001):
    """Frames every 20 ms of sender time, each arriving ``delay`` after its last sample was stamped."""
    for ts in np.arange(t_from, t_to, FRAME_S):
        clock.observe(ts, ts + offset + delay)


# -- ArrivalClock --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pause", [6.0, 60.0, 3600.0])
def test_a_backlog_after_a_pause_is_old_by_about_the_pause(pause):
    """Live for 10 s, silent for ``pause`` while the sender buffers, then the whole backlog at once (in 1 MiB
    reads, here 50 frames each, 1 ms apart): every backlog frame maps to its acquisition time, so its age is what
    it really is. With the old arrival-time window the estimate re-formed from the backlog: ages about 0."""
    clock = ArrivalClock()
    live(clock, 0.0, 10.0)
    assert clock.settled and clock.offset == pytest.approx(OFFSET + 0.001)
    first = 10.0
    stamps = np.arange(first, first + pause, FRAME_S)[-5000:]  # the newest 100 s of it at most: bounded
    arrival = first + pause + OFFSET
    ages = []
    for k in range(0, len(stamps), 50):
        arrival += 0.001
        for ts in stamps[k : k + 50]:
            clock.observe(ts, arrival)
        ages.append((arrival - clock.to_local(stamps[k : k + 50][-1]), arrival - OFFSET - stamps[k : k + 50][-1]))
    for est, true in ages:
        assert est == pytest.approx(true, abs=0.002)  # old by about the pause, never mistaken for fresh
    assert ages[0][0] > min(pause, 100.0) - 1.2  # the first read: its newest frame 49 frames in
    assert clock.offset == pytest.approx(OFFSET + 0.001)  # the estimate did not move
    live(clock, first + pause, first + pause + 10.0)  # live again: fresh again, and still the same estimate
    assert clock.offset == pytest.approx(OFFSET + 0.001)


def test_a_backlog_drained_slowly_over_more_than_the_window_stays_old():
    """20 s of backlog drained at twice real time (over 20 s of arrival, longer than the 5 s window): its lags
    fall as it catches up, which is no clock step, so the estimate never rises to them."""
    clock = ArrivalClock()
    live(clock, 0.0, 10.0)
    t0 = 10.0 + OFFSET + 20.0  # the link came back after 20 s of silence
    for k, ts in enumerate(np.arange(10.0, 50.0, FRAME_S)):
        arrival = t0 + k * FRAME_S / 2
        clock.observe(ts, arrival)
        true_age = arrival - OFFSET - ts
        assert arrival - clock.to_local(ts) == pytest.approx(true_age, abs=0.002)
    assert clock.offset == pytest.approx(OFFSET + 0.001)


@pytest.mark.parametrize("step", [2.0, 0.5, -2.0, -0.5])
def test_a_sender_clock_step_moves_the_estimate_by_the_step(step):
    """A forward step (timestamps suddenly later: smaller lags) moves the estimate at once; a backward step
    (larger lags, like a backlog from one side) after one window of live streaming at the new lag, during which
    every frame looks old by the step. The server faults on either move (beyond its freshness limit)."""
    clock = ArrivalClock()
    live(clock, 0.0, 10.0)
    before = clock.offset
    live(clock, 10.0 + step, 12.0 + step, offset=OFFSET - step)  # sender time jumped by ``step``
    if step > 0:
        assert clock.offset == pytest.approx(before - step)
        return
    assert clock.offset == pytest.approx(before)  # 2 s after the step: not yet adopted, frames look old
    ts = 12.0 + step - FRAME_S
    assert (ts + OFFSET - step) - clock.to_local(ts) == pytest.approx(-step, abs=0.002)
    live(clock, 12.0 + step, 15.5 + step, offset=OFFSET - step)
    assert clock.offset == pytest.approx(before - step)  # a whole window at the new lag: adopted


def test_drift_is_followed_both_ways_and_jitter_never_makes_ages_negative():
    rng = np.random.default_rng(0)
    for ppm in (-200, 200):  # the sender's clock runs slow / fast against ours
        clock = ArrivalClock()
        for ts in np.arange(0.0, 120.0, FRAME_S):
            offset = OFFSET + ts * ppm * 1e-6
            arrival = ts + offset + 0.001 + rng.exponential(0.005)
            clock.observe(ts, arrival)
            assert clock.to_local(ts) <= arrival + 1e-9  # never acquired after it arrived
        true = OFFSET + 120.0 * ppm * 1e-6
        assert abs(clock.offset - true) < 0.004  # within the window's drift and the smallest delay
    assert not ArrivalClock().settled


def test_only_a_stream_at_real_time_pace_settles():
    """The jump check starts when the estimate has settled; a burst faster than real time (a file sent unpaced)
    has no real-time clock to check and never settles, whatever its length."""
    paced = ArrivalClock()
    live(paced, 0.0, 0.9)
    assert not paced.settled
    live(paced, 0.9, 1.5)
    assert paced.settled
    burst = ArrivalClock()
    for k, ts in enumerate(np.arange(0.0, 600.0, 0.2)):  # 200 ms of samples every 10 ms: 20 x real time
        burst.observe(ts, OFFSET + k * 0.01)
    assert not burst.settled
    paced.reset()
    assert paced.offset is None and not paced.settled
    with pytest.raises(RuntimeError, match="before any frame"):
        paced.to_local(0.0)
    with pytest.raises(ValueError, match="positive"):
        ArrivalClock(0)


# -- bmi serve with a real TCP sender -----------------------------------------------------------------------------


class Listener(UDPListener):
    """The controller; ``close()`` gives (receipt time on this computer's monotonic clock, message) pairs."""

    def close(self):
        super().close()
        return list(zip(self.arrivals, self.messages))


class Amplifier:
    """Sends a recording over TCP as an amplifier would: sample k acquired at t0 + k / sfreq on this computer's
    monotonic clock (the server's too), 20 ms frames stamped with their last sample's acquisition time plus the
    sender clock's error ``shift``."""

    def __init__(self, sock, data, ch_names, sfreq):
        self.sock, self.data, self.sfreq = sock, data, sfreq
        self.n = int(round(FRAME_S * sfreq))
        self.pos, self.shift = 0, 0.0
        sock.sendall(encode_hello(list(ch_names), sfreq, None, None))
        self.t0 = time.monotonic()

    def acquired(self, k):
        return self.t0 + k / self.sfreq

    def _frame(self):
        end = self.pos + self.n
        self.sock.sendall(encode_data(self.data[:, self.pos : end], self.acquired(end) + self.shift))
        self.pos = end

    def stream(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(max(0.0, self.acquired(self.pos + self.n) - time.monotonic()))
            self._frame()

    def pause_then_backlog(self, seconds):
        """Silent for ``seconds`` while acquiring, then everything acquired meanwhile at once (bursts of 50 frames,
        so the server reads it in several pulls). Returns the backlog's sample range."""
        time.sleep(seconds)
        first, due = self.pos, int((time.monotonic() - self.t0) * self.sfreq)
        while self.pos + self.n <= due:
            for _ in range(50):
                if self.pos + self.n <= due:
                    self._frame()
            time.sleep(0.002)
        return first, self.pos


def long_recording(data, sfreq, seconds):
    reps = int(np.ceil(seconds * sfreq / data.shape[1]))
    return np.concatenate([data] * reps, axis=1) if reps > 1 else data


def serve_tcp(exported, seconds):
    port, listener = free_port(), Listener()
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{listener.port}", "--duration", str(seconds), "--no-status")
    return server, port, listener


def finish(server, listener, timeout):
    code, out, err = wait(server, timeout)
    time.sleep(0.2)
    messages = listener.close()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), messages, err


def check_ages(decisions, amp, max_age_ms=150.0):
    """Every decision's window end is its last sample's real acquisition time (to 20 ms), and it was fresh."""
    for received, msg in decisions:
        true_end = amp.acquired(msg["sample_index"])
        assert abs(msg["t_window_end"] - true_end) < 0.02, msg
        assert (received - true_end) * 1000 < max_age_ms + 100, msg  # + delivery and scheduling on a loaded machine


@pytest.mark.slow
def test_a_backlog_after_a_long_pause_is_never_decoded(exported, recording_array):
    """Live, a 6 s pause (longer than the clock's 5 s window) while the sender buffers, the backlog at once with
    its acquisition times, live again: no decision on a backlog window, no clock fault, decoding resumes."""
    data, ch_names, sfreq, _ = recording_array
    server, port, listener = serve_tcp(exported, 18)
    with connect(port) as sock:
        amp = Amplifier(sock, long_recording(data, sfreq, 20), ch_names, sfreq)
        amp.stream(4.5)
        first, last = amp.pause_then_backlog(6.0)
        amp.stream(4.0)
    stats, messages, err = finish(server, listener, 40)
    decisions = [(t, m) for t, m in messages if m["type"] == "decision"]
    check_ages(decisions, amp)
    fresh_from = last - int(0.15 * sfreq)  # the backlog's newest samples were acquired just before it was sent
    assert not [m["sample_index"] for _, m in decisions if first < m["sample_index"] <= fresh_from]
    assert any(m["sample_index"] <= first for _, m in decisions)  # decoding before the pause ...
    assert any(m["sample_index"] > last for _, m in decisions)  # ... and again after the backlog
    assert stats["withheld_hops"].get("late", 0) + stats["superseded_hops"] >= 5  # the backlog was seen, withheld
    assert stats["clock"]["faults"] == 0 and "clock_fault" not in stats["events"], err  # a pause is no clock fault


@pytest.mark.slow
def test_a_sender_clock_jump_either_way_is_a_clock_fault(exported, recording_array):
    """The sender's clock jumps 2 s forward, later back: each is a clock fault (a safe message with reason
    "clock", counted, one notice), no decision carries a wrong age, and decoding resumes after each."""
    data, ch_names, sfreq, _ = recording_array
    server, port, listener = serve_tcp(exported, 19)
    with connect(port) as sock:
        amp = Amplifier(sock, long_recording(data, sfreq, 20), ch_names, sfreq)
        amp.stream(4.5)
        forward = amp.pos
        amp.shift = 2.0
        amp.stream(3.0)
        back = amp.pos
        amp.shift = 0.0
        amp.stream(9.0)  # a backward step shows after one clock window (5 s) of live streaming
    stats, messages, err = finish(server, listener, 40)
    decisions = [(t, m) for t, m in messages if m["type"] == "decision"]
    check_ages(decisions, amp)
    faults = [m for _, m in messages if m["type"] == "safe" and m["reason"] == "clock"]
    assert len(faults) == 2, [m["reason"] for _, m in messages if m["type"] == "safe"]
    assert forward < faults[0]["sample_index"] <= forward + 2 * amp.n  # at once
    assert back < faults[1]["sample_index"]
    assert any(faults[0]["seq"] < m["seq"] < faults[1]["seq"] for _, m in decisions)  # resumed after the first
    assert any(m["seq"] > faults[1]["seq"] for _, m in decisions)  # ... and after the second
    assert stats["events"]["clock_fault"] == 2 and stats["clock"]["faults"] == 2
    assert "jumped" in stats["clock"]["last_fault"]
    assert sum("clock fault" in n for n in stats["notices"]) == 2 and err.count("clock fault") == 2


def test_a_replay_never_faults_on_its_own_clock(exported, recording_array, tmp_path):
    """A replay stamps samples on the local clock as they fall due: never ahead, no offset, no clock fault."""
    data, ch_names, sfreq, _ = recording_array
    npz = tmp_path / "rec.npz"
    np.savez(npz, data=data[:, : int(5 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    code, out, err = wait(bmi("serve", str(exported.path), "--input", f"replay:{npz}", "--output",
                              f"udp://127.0.0.1:{free_port()}", "--duration", "4", "--no-status"), 40)
    assert code == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["decisions"] > 0
    assert stats["clock"]["faults"] == 0 and stats["clock"]["timestamps_ahead_ms_max"] == 0.0


@pytest.mark.slow
def test_lsl_timestamps_ahead_of_our_clock_are_a_clock_fault(exported, recording_array):
    """An LSL outlet stamping each chunk one chunk ahead (mne-lsl's PlayerLSL convention) is tolerated; stamps
    running a second ahead (a sender clock liblsl corrects wrongly) are a clock fault: safe with reason "clock",
    no decision on them, one notice, and decoding resumes once the stamps are right again."""
    import pylsl

    data, ch_names, sfreq, _ = recording_array
    data = long_recording(data, sfreq, 20)
    name = f"bmi-ahead-{time.monotonic_ns()}"
    info = pylsl.StreamInfo(name, "EEG", len(ch_names), sfreq, "float32", name)
    channels = info.desc().append_child("channels")
    for ch in ch_names:
        channels.append_child("channel").append_child_value("label", ch).append_child_value("unit", "volts")
    outlet = pylsl.StreamOutlet(info)
    listener = Listener()
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{listener.port}",
                 "--duration", "14", "--no-status")
    assert outlet.wait_for_consumers(30)
    n, pos, t0 = int(round(FRAME_S * sfreq)), 0, pylsl.local_clock()

    def stream(seconds, lead):
        nonlocal pos
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(max(0.0, t0 + (pos + n) / sfreq - pylsl.local_clock()))
            outlet.push_chunk(data[:, pos : pos + n].T.copy(), pylsl.local_clock() + lead)
            pos += n

    stream(5.0, FRAME_S)  # one chunk ahead: tolerated
    ahead = pos
    stream(2.0, 1.0)
    fixed = pos
    stream(4.0, 0.0)
    stats, messages, err = finish(server, listener, 40)
    del outlet
    decisions = [m for _, m in messages if m["type"] == "decision"]
    faults = [m for _, m in messages if m["type"] == "safe" and m["reason"] == "clock"]
    assert len(faults) == 1 and ahead < faults[0]["sample_index"] <= ahead + 3 * n, (ahead, fixed, [f["sample_index"] for f in faults], stats["notices"])
    assert any(m["sample_index"] <= ahead for m in decisions)  # decoded while one chunk ahead
    assert not [m for m in decisions if ahead < m["sample_index"] <= fixed]  # never on the stamps a second ahead
    assert any(m["sample_index"] > fixed for m in decisions)  # resumed
    assert all(m["age_ms"] >= 0 for m in decisions)
    assert stats["events"]["clock_fault"] == 1 and "ahead" in stats["clock"]["last_fault"]
    assert stats["clock"]["timestamps_ahead_ms_max"] > 900 and err.count("clock fault") == 1
