"""The operator console in a real browser (Debian's chromium driven by Playwright): the live page follows a
replayed LSL stream, the emergency stop reaches the hand, resume needs confirmation, blinding holds until an
unblinding that is logged, the cue page follows a paradigm with LSL markers, the runs page lists and plots
runs, and a page of another site in the same browser cannot resume a stopped hand (raw HTTP: test_console_security)."""

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime_helpers import bmi, free_port, wait
from test_safety import UDPListener

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
SECRET = "console-secret-of-this-test-0123"  # given as the environment variable, as a lab would


def with_secret() -> dict:
    """The environment of a server or console whose secret is SECRET."""
    return dict(os.environ, BMI_CONSOLE_TOKEN=SECRET)


def screenshot(page, name, tmp_path):
    """Into docs/screenshots/ (shown on the docs site's journey pages) when BMI_SCREENSHOTS=1, else beside the test."""
    folder = SCREENSHOTS if os.environ.get("BMI_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))


def open_page(browser, url, timeout=30):
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()  # a context may open more pages
    deadline = time.monotonic() + timeout
    while True:
        try:
            page.goto(url)
            return page
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def attacker_site(console_port):
    """A page on another origin (localhost on another port) that POSTs a confirmed resume to the console under
    both of its loopback names, with the browser's cookies, as a forged request would."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    html = ("<script>for (const host of ['127.0.0.1', 'localhost']) fetch(`http://${host}:%d/api/control/resume`, "
            "{method: 'POST', credentials: 'include', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, "
            "body: JSON.stringify({confirm: true})}).catch(() => {}); document.title = 'sent';</script>" % console_port)

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def play(path, name, seconds, annotations=False):
    return subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom mne_lsl.player import PlayerLSL\n"
        f"p = PlayerLSL({str(path)!r}, chunk_size=10, name={name!r}, annotations={annotations})\n"
        f"p.start(); time.sleep({seconds}); p.stop()\n")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_live_page_emergency_stop_and_resume(browser, exported, recording_array, tmp_path):
    _, _, _, path = recording_array
    name, port = f"bmi-console-{time.monotonic_ns()}", free_port()
    player = play(path, name, 40)
    udp = UDPListener()
    cues = f"{name}-cues"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{udp.port}",
                 "--console", f"127.0.0.1:{port}", "--cue-outlet", cues, "--duration", "30", "--no-status",
                 env=with_secret())
    page = open_page(browser, f"http://127.0.0.1:{port}/?token={SECRET}")
    state = page.get_by_test_id("safety-state")
    command = page.get_by_test_id("command")
    page.wait_for_function("document.querySelector('[data-testid=safety-state]').textContent === 'DECODING'", timeout=20000)
    first = page.get_by_test_id("probabilities").inner_text()
    seq = int(command.get_attribute("data-seq"))
    page.wait_for_function(f"Number(document.querySelector('[data-testid=command]').dataset.seq) > {seq + 10}")
    assert page.get_by_test_id("probabilities").inner_text() != first  # the decisions change on the page
    time.sleep(2.5)  # the rate counts the last 2 s
    assert float(page.get_by_test_id("decision-rate").inner_text()) > 15  # one per 50 ms hop
    assert float(page.get_by_test_id("latency-p99").inner_text()) > 0
    assert page.get_by_test_id("gate").is_hidden()  # no gate in force: no gate on the page
    screenshot(page, "console-live.png", tmp_path)

    clicked = time.time()
    page.get_by_test_id("emergency-stop").click()
    page.wait_for_function("document.querySelector('[data-testid=safety-state]').dataset.reason === 'emergency_stop'",
                           timeout=2000)
    deadline = time.time() + 2
    while time.time() < deadline and not any(m.get("reason") == "emergency_stop" for m in udp.messages):
        time.sleep(0.01)
    stop_msg = next(m for m in udp.messages if m.get("reason") == "emergency_stop")
    assert stop_msg["safe"] and stop_msg["action"] == "hold" and stop_msg["t_wall"] - clicked < 0.2
    assert "EMERGENCY STOP" in state.inner_text()
    screenshot(page, "console-emergency-stop.png", tmp_path)
    assert "token" not in page.url  # the secret went into a cookie; the address bar and history do not keep it

    # another site's page, in the same browser as the operator's, tries to resume the hand (a forged request)
    n = len(udp.messages)
    with attacker_site(port) as evil:
        attacker = page.context.new_page()  # the same cookie jar as the operator's page
        attacker.goto(evil)
        attacker.wait_for_function("document.title === 'sent'", timeout=5000)
        time.sleep(1.0)
        attacker.close()
    assert not [m for m in udp.messages[n:] if m["type"] == "decision"] and "EMERGENCY STOP" in state.inner_text()

    page.once("dialog", lambda dialog: dialog.dismiss())  # resume needs confirmation: declined, still stopped
    page.get_by_test_id("resume").click()
    time.sleep(1.0)
    n = len(udp.messages)
    time.sleep(0.5)
    assert not [m for m in udp.messages[n:] if m["type"] == "decision"] and "EMERGENCY STOP" in state.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("resume").click()
    page.wait_for_function("document.querySelector('[data-testid=safety-state]').textContent === 'DECODING'", timeout=10000)
    after = len(udp.messages)
    time.sleep(0.5)
    assert [m for m in udp.messages[after:] if m["type"] == "decision"]  # the hand is driven again

    # the operator starts a cue paradigm for the patient's screen and stops it after its first cue
    import pylsl

    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", cues, timeout=10)[0])  # a recorder of the cue markers
    inlet.open_stream(timeout=10)
    page.get_by_label("trials/class").fill("2")
    page.get_by_label("cue s").fill("3")
    paradigm = page.get_by_test_id("paradigm-state")
    page.get_by_test_id("paradigm-toggle").click()
    page.wait_for_function("document.querySelector('[data-testid=paradigm-state]').textContent.startsWith('cue 1 / 6')",
                           timeout=5000)
    first = paradigm.inner_text().split(": ")[1]
    screenshot(page, "console-paradigm.png", tmp_path)
    assert first in ("rest", "grasp", "open") and page.get_by_test_id("paradigm-toggle").inner_text() == "Stop paradigm"
    page.get_by_test_id("paradigm-toggle").click()
    page.wait_for_function("document.querySelector('[data-testid=paradigm-state]').dataset.running === 'false'",
                           timeout=3000)
    assert paradigm.inner_text() == "ended: 1 of 6 cues shown"
    samples, _ = inlet.pull_chunk(timeout=1.0)
    assert [s[0] for s in samples] == [first]  # one marker: no cue after the stop
    page.close()
    server.send_signal(2)
    code, _, err = wait(server, 30)
    player.kill()
    udp.close()
    assert code == 0, err


def test_a_sham_session_looks_real_until_unblinded_and_marks_are_logged(browser, exported, recording_array, tmp_path,
                                                                          tmp_path_factory):
    import pylsl

    data, ch_names, sfreq, _ = recording_array
    replay = tmp_path_factory.mktemp("recording") / "rec.npz"  # a path that does not say "sham" itself
    import numpy as np

    np.savez(replay, data=data[:, : int(30 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    port, log, markers = free_port(), replay.parent / "session.csv", f"bmi-marks-{time.monotonic_ns()}"
    server = bmi("serve", str(exported.path), "--input", f"replay:{replay}", "--output", f"udp://127.0.0.1:{free_port()}",
                 "--output", f"lsl:{markers}", "--console", f"127.0.0.1:{port}", "--duration", "25", "--no-status",
                 "--sham", "--log", str(log), env=with_secret())
    page = open_page(browser, f"http://127.0.0.1:{port}/?token={SECRET}")
    page.wait_for_function("document.querySelector('[data-testid=safety-state]').textContent === 'DECODING'", timeout=20000)
    assert "sham" not in page.content().lower()  # nothing on the page tells the condition
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", markers, timeout=10)[0])
    inlet.open_stream(timeout=10)
    page.fill("#mark-label", "patient reports pain 4/10")
    page.get_by_test_id("mark").click()
    page.wait_for_function("document.querySelector('[data-testid=ack]').dataset.ok === 'true'")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("unblind").click()
    page.wait_for_function("document.querySelector('[data-testid=condition]').dataset.condition === 'sham'")
    time.sleep(0.5)
    samples, _ = inlet.pull_chunk(timeout=1.0, max_samples=10000)
    screenshot(page, "console-unblinded.png", tmp_path)
    page.close()
    server.send_signal(2)
    code, _, err = wait(server, 30)
    assert code == 0, err
    rows = list(csv.DictReader(log.open()))
    assert [r["reason"] for r in rows if r["type"] == "mark"] == ["patient reports pain 4/10"]
    assert [r["reason"] for r in rows if r["type"] == "unblind"] == ["sham"]
    assert any(json.loads(s[0]).get("reason") == "patient reports pain 4/10" for s in samples if '"mark"' in s[0])


def test_the_live_page_shows_the_gate_in_force(browser, exported, recording_array, tmp_path, tmp_path_factory):
    """A rest gate (`--gate-rest-class rest`) on the page: its rule, and every decision's gate, which is
    1 - P(rest) of the same decision's probabilities."""
    import numpy as np

    data, ch_names, sfreq, _ = recording_array
    replay = tmp_path_factory.mktemp("gate-recording") / "rec.npz"
    np.savez(replay, data=data[:, : int(30 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    port = free_port()
    server = bmi("serve", str(exported.path), "--input", f"replay:{replay}", "--output", f"udp://127.0.0.1:{free_port()}",
                 "--console", f"127.0.0.1:{port}", "--duration", "25", "--no-status", "--gate-rest-class", "rest",
                 "--gate-threshold", "0.6", env=with_secret())
    page = open_page(browser, f"http://127.0.0.1:{port}/?token={SECRET}")
    page.wait_for_function("document.querySelector('[data-testid=safety-state]').textContent === 'DECODING'", timeout=20000)
    gate = page.get_by_test_id("gate")
    assert gate.is_visible() and gate.get_attribute("data-threshold") == "0.6"
    assert float(gate.get_attribute("data-opens-at")) == pytest.approx(0.7)
    assert "rest while below 0.60; opens at 0.70 held 200 ms" in page.locator("#gate-rule").inner_text()
    assert "1 − P(rest)" in page.locator("#gate-source").inner_text()
    rest = page.evaluate("[...document.querySelectorAll('#probabilities .row')].findIndex("
                                      "(r) => r.dataset.class === 'rest')")
    for _ in range(5):  # the gate and the probabilities of one decision, read together
        page.wait_for_function("document.querySelector('[data-testid=gate]').dataset.value !== ''")
        value, probability = page.evaluate(
            f"[Number(document.querySelector('[data-testid=gate]').dataset.value), "
            f"Number(document.querySelectorAll('#probabilities .row .p')[{rest}].textContent)]")
        assert value == pytest.approx(1 - probability, abs=0.006)
        time.sleep(0.3)
    screenshot(page, "console-gate.png", tmp_path)
    page.close()
    server.send_signal(2)
    code, _, err = wait(server, 30)
    assert code == 0, err


def test_cue_page_follows_a_paradigm_with_lsl_markers(browser, trained_run, tmp_path):
    import httpx
    import pylsl

    port, outlet = free_port(), f"bmi-cues-{time.monotonic_ns()}"
    console = bmi("console", "--runs", str(trained_run.parent), "--listen", f"127.0.0.1:{port}", "--cue-outlet", outlet,
                  env=with_secret())
    page = open_page(browser, f"http://127.0.0.1:{port}/cue?token={SECRET}")
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", outlet, timeout=10)[0])  # a recorder, before the first cue
    inlet.open_stream(timeout=10)
    base = f"http://127.0.0.1:{port}"
    reply = httpx.post(base + "/api/paradigm", json={"classes": ["grasp", "open", "rest"], "trials": 1, "cue_s": 1.2,
                       "rest_s": 0.6, "jitter_s": 0.0, "seed": 3}, headers={"X-BMI-Token": SECRET, "Origin": base}).json()
    order = reply["order"]
    assert sorted(order) == ["grasp", "open", "rest"]
    seen = []
    cue = page.get_by_test_id("cue")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(seen) < 3:
        label = cue.get_attribute("data-label")
        if label and (not seen or seen[-1] != label):
            seen.append(label)
            if len(seen) == 1:
                assert page.get_by_test_id("countdown").inner_text().endswith(" s")
                screenshot(page, "console-cue.png", tmp_path)
        time.sleep(0.05)
    assert seen == order  # the page showed every cue, in the paradigm's order
    samples, stamps = inlet.pull_chunk(timeout=2.0)
    console.terminate()
    wait(console, 10)
    assert [s[0] for s in samples] == order  # an LSL marker at each onset ...
    assert 1.7 < stamps[1] - stamps[0] < 2.0 and 1.7 < stamps[2] - stamps[1] < 2.0  # ... cue 1.2 s + rest 0.6 s apart


def test_runs_page_lists_sorts_and_overlays_curves(browser, trained_run, tmp_path):
    runs = tmp_path / "runs"
    for i, (group, acc) in enumerate([("cv-a", 0.9), ("cv-a", 0.7), (None, 0.8)]):
        copy = runs / f"{trained_run.name}-{i}"
        shutil.copytree(trained_run, copy)
        summary = json.loads((copy / "summary.json").read_text())
        summary.update(run_id=copy.name, group=group, test=dict(summary["test"], balanced_accuracy=acc))
        (copy / "summary.json").write_text(json.dumps(summary))
    port = free_port()
    console = bmi("console", "--runs", str(runs), "--listen", f"127.0.0.1:{port}", env=with_secret())
    page = open_page(browser, f"http://127.0.0.1:{port}/runs?token={SECRET}")
    table = page.get_by_test_id("runs-table")
    page.wait_for_function("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === 3")
    assert "group cv-a: 2 runs" in table.inner_text()
    page.uncheck("#group-toggle")
    page.click("th[data-column=test]")
    column = 1 + ["run_id", "group", "model", "lr", "batch", "band", "window", "val", "test"].index("test")
    order = [float(row.locator("td").nth(column).inner_text()) for row in table.locator("tbody tr[data-run]").all()]
    assert order == sorted(order, reverse=True)
    for box in table.locator("tbody tr[data-run] input").all():
        box.check()
    page.wait_for_function("document.querySelectorAll('[data-testid=curves] polyline').length === 3")
    assert page.get_by_test_id("confusion").locator("table").count() == 3
    link = table.locator("a").first.get_attribute("href")
    assert link.endswith(".ckpt")
    screenshot(page, "console-runs.png", tmp_path)
    console.terminate()
    wait(console, 10)


def sweep_folder(runs: Path, name: str, journal: Path, trials: int) -> Path:
    """A study as bmi sweep leaves it: trial run folders, the study in a journal file, one worker's summary."""
    import optuna

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))),
                                direction="maximize")
    space = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
             "model.name": optuna.distributions.CategoricalDistribution(["eegnet", "shallow"])}
    for _ in range(trials):
        trial = study.ask(space)
        run = runs / name / f"trial{trial.number}"
        run.mkdir(parents=True)
        score = 0.5 + 30 * trial.params["optim.lr"]
        study.tell(trial, score)
        trial_summary = {"run_id": f"{name}-{run.name}", "group": name, "val": {"balanced_accuracy": score},
                         "test": {"balanced_accuracy": score - 0.05}}
        (run / "summary.json").write_text(json.dumps(trial_summary))
    (runs / name / f"sweep_summary-trials0-{trials - 1}.json").write_text(json.dumps(
        {"study": name, "storage": f"journal:{journal}", "metric": "val.balanced_accuracy"}))
    return runs / name


def test_runs_page_links_a_sweeps_study_report(browser, tmp_path):
    """A study folder's group row links its report (Optuna's plots, shown under a policy that allows no script and
    no request), or names the command that makes one; a CV's row has neither."""
    from pipeline.study_report import write_study_report

    runs = tmp_path / "runs"
    drawn = sweep_folder(runs, "sweep-drawn", tmp_path / "drawn.log", trials=4)
    write_study_report(drawn)
    sweep_folder(runs, "sweep-new", tmp_path / "new.log", trials=2)
    (runs / "cv-a" / "fold0").mkdir(parents=True)
    (runs / "cv-a" / "fold0" / "summary.json").write_text(json.dumps({"run_id": "fold0", "test": {"balanced_accuracy": 0.6}}))
    port = free_port()
    console = bmi("console", "--runs", str(runs), "--listen", f"127.0.0.1:{port}", env=with_secret())
    try:
        page = open_page(browser, f"http://127.0.0.1:{port}/runs?token={SECRET}")
        page.wait_for_function("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === 7")
        link = page.locator("tr.group[data-group=sweep-drawn] [data-testid=study-report]")
        assert link.inner_text() == "study report" and link.get_attribute("href") == "/runs/report/sweep-drawn"
        missing = page.locator("tr.group[data-group=sweep-new] [data-testid=study-report-missing]")
        assert missing.inner_text() == "no study report"  # the command that makes one, on hovering
        assert missing.get_attribute("title") == f"make it: bmi compare --study-report {runs / 'sweep-new'}"
        assert page.locator("tr.group[data-group=cv-a] [data-testid^=study-report]").count() == 0
        with page.context.expect_page() as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state()
        assert page.locator("tr[data-run]").count() == 7  # the click opened the report, it did not fold the group
        assert report.locator("h1").inner_text() == "Study sweep-drawn"
        assert "optim.lr" in report.get_by_test_id("importances").inner_text()
        sizes = report.evaluate("[...document.images].map((i) => i.naturalWidth)")
        assert len(sizes) == 2 and min(sizes) > 500  # both plots drawn from their inline data under the policy
        screenshot(report, "console-study-report.png", tmp_path)
        answer = page.request.get(f"http://127.0.0.1:{port}/runs/report/sweep-new")
        assert answer.status == 404 and "bmi compare --study-report makes one" in answer.text()
        assert page.request.get(f"http://127.0.0.1:{port}/runs/report/..%2F..").status == 404
    finally:
        console.terminate()
        wait(console, 10)
