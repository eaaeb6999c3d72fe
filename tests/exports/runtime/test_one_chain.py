"""One decision chain: a recording streamed through a real `bmi serve` (TCP, hop-sized frames at stream pace) and
rehearsed by a real `bmi rehearse` gets the same decisions, sample index by sample index, including where the
data are bad: a stall of the stream, a flat channel and a DC step (an electrode pop)."""

import collections
import csv
import json
import time

import mne
import numpy as np
import yaml

from runtime_helpers import bmi, connect, free_port, send_data, wait
from test_server import read_log

from exports.runtime.protocol import encode_hello


def test_serve_and_rehearse_decide_the_same_on_a_stall_a_flat_channel_and_a_step(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    hop = max(1, int(round(0.05 * sfreq)))  # bmi serve's default --hop-ms 50, in samples, as the chain counts it
    # what the sender delivers: 7 s, a 0.6 s stall in which 1 s of samples is lost, then 9 s more
    first = data[:, : 7 * hop * 20].copy()
    lost = int(sfreq)
    second = data[:, first.shape[1] + lost : first.shape[1] + lost + 9 * hop * 20].copy()
    second[3, 2 * hop * 20 : 3 * hop * 20] = second[3, 2 * hop * 20]  # channel 3 stuck for 1 s
    second[:, 6 * hop * 20 :] += 20e-3  # an electrode pop on every channel, 6 s after the stall
    received = np.concatenate([first, second], axis=1)

    log, stats = tmp_path / "session.csv", tmp_path / "stats.json"
    port = free_port()
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--stats", str(stats), "--no-status",
                 "--duration", "20", "--max-age-ms", "100000")  # ages are the server's alone: not compared here
    with connect(port, timeout=60) as sock:
        sock.sendall(encode_hello(list(ch_names), sfreq, None, None))
        sent = send_data(sock, first, sfreq, [hop], pace=0.02)
        time.sleep(0.6)  # longer than --stale-ms 250: the server's watchdog restarts the chain
        send_data(sock, second, sfreq, [hop], pace=0.02, start=sent + lost)
        time.sleep(0.5)
    code, _, err = wait(server, 60)
    assert code == 0, err
    served = json.loads(stats.read_text())
    assert served["superseded_hops"] == 0, "the sender's frames were merged: the comparison needs one hop per frame"
    assert served["samples_received"] == received.shape[1]

    # the same samples as a recording, the stall marked where MNE marks a skip in acquisition
    raw = mne.io.RawArray(received.astype(np.float64), mne.create_info(list(ch_names), sfreq, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 4.0, first.shape[1] / sfreq, 12.0], [1.0, 1.0, 0.0, 1.0],
                                        ["rest", "grasp", "BAD_ACQ_SKIP", "open"]))
    recording = tmp_path / "received_raw.fif"
    raw.save(recording, verbose="error")
    config = tmp_path / "rehearse.yaml"
    config.write_text(yaml.safe_dump({"data": {"files": [str(recording)],
                                               "events": {c: c for c in ("rest", "grasp", "open")}}}))
    rehearsed_csv = tmp_path / "rehearsed.csv"
    code, _, err = wait(bmi("rehearse", str(exported.path), "--data", str(config), "--decisions", str(rehearsed_csv)), 120)
    assert code == 0, err
    rehearsed = list(csv.DictReader(rehearsed_csv.open()))

    live = {int(r["sample_index"]): r for r in read_log(log) if r["type"] == "decision"}
    offline = {int(r["sample_index"]): r for r in rehearsed if not r["reason"]}
    assert len(live) > 150 and sorted(live) == sorted(offline)
    for index, row in live.items():
        assert (row["command"], row["action"]) == (offline[index]["command"], offline[index]["action"]), index
        assert json.loads(row["probabilities"]) == json.loads(offline[index]["probabilities"]), index
    # ... and the hops withheld, by reason (the rehearsal has no refused chunk here: every row is a hop)
    withheld = collections.Counter(r["reason"] for r in rehearsed if r["reason"])
    assert dict(withheld) == served["withheld_hops"]
    assert {"flat", "jump"} <= set(withheld) and withheld["settling"] > 0
    stall = first.shape[1]
    after = [int(r["sample_index"]) for r in rehearsed if int(r["sample_index"]) > stall]
    assert rehearsed[[int(r["sample_index"]) for r in rehearsed].index(after[0])]["reason"] == "settling"
