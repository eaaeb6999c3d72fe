"""The server's side of the console: what the live page is sent, and the operator's controls applied.

The server calls :meth:`ConsoleLink.publish` for each message and :meth:`ConsoleLink.tick` once per loop
pass; the link reads the console's controls (never waiting), answers each with the server's own state,
and sends a status snapshot twice a second. Everything here runs in the server process but costs the
decoding loop only non-blocking datagram sends.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..safety import saturated_channels
from ..stats import percentiles
from .bridge import ConsoleBridge


class ConsoleLink:
    def __init__(self, server, listen: str):
        self.server = server
        meta, spec, cfg = server.meta, server.spec, server.cfg
        hello = {"model": {"run_id": meta["run"].get("run_id"), "name": meta["model"]["name"], "classes": server.classes,
                           "actions": server.actions, "channels": spec.ch_names, "units": meta["channels"]["units"],
                           "positions": meta["channels"].get("positions"), "sfreq_in": spec.sfreq_in,
                           "window_s": meta["window"]["seconds"], "settle_s": spec.settle_samples / spec.sfreq_in},
                 "hop_ms": cfg.hop_ms, "max_age_ms": cfg.max_age_ms, "outputs": server.outputs.specs,
                 "log_path": str(cfg.log_path) if cfg.log_path else None, "gate": server.gate_settings()}
        self.bridge = ConsoleBridge(listen, allow_remote=cfg.allow_remote, runs_dir=cfg.runs_dir, hello=hello,
                                    cue_outlet=cfg.cue_outlet, token_file=cfg.console_token_file)
        self.url = self.bridge.url
        self._next_status = 0.0
        self._lost = False

    def publish(self, msg: dict[str, Any]) -> None:
        """A message the outputs got (heartbeats are left out: the status shows the safe state)."""
        if msg["type"] == "decision":
            self.bridge.send({"kind": "decision", "seq": msg["seq"], "t": msg["t_wall"], "command": msg["command"],
                              "action": msg["action"], "level": msg["level"],
                              "probabilities": list(msg["probabilities"].values()),
                              "latency_ms": msg["latency_ms"], "age_ms": msg["age_ms"], "gate": msg.get("gate")})
        elif msg["type"] != "heartbeat":
            self.bridge.send({"kind": "safe", "type": msg["type"], "reason": msg["reason"], "t": msg["t_wall"]})

    def event(self, text: str) -> None:
        self.bridge.send({"kind": "event", "t": time.time(), "text": text})

    def tick(self, now: float) -> None:
        for control in self.bridge.controls():
            self._apply(control)
        if now >= self._next_status:
            self.status()
            self._next_status = now + 0.5
            if self.bridge.exit_code is not None and not self._lost:
                self._lost = True  # decoding goes on without it
                self.server.notice(f"the console stopped (exit code {self.bridge.exit_code}); decoding goes on")

    def _apply(self, control: dict[str, Any]) -> None:
        """One control, answered with the server's own state (what the page shows), never the click."""
        server, action = self.server, control.get("action")
        confirmed = control.get("confirm") is True
        if action == "estop":
            ok, message = True, server.emergency_stop()
        elif action == "resume":
            ok, message = (True, server.resume()) if confirmed else (False, "resume needs confirmation")
        elif action == "log_start":
            ok, message = server.start_log()
        elif action == "log_stop":
            ok, message = True, server.stop_log()
        elif action == "mark":
            ok, message = True, server.mark(str(control.get("label") or "mark")[:200])
        elif action == "unblind":
            ok, message = (True, self._unblind()) if confirmed else (False, "unblinding needs confirmation")
        else:
            ok, message = False, f"unknown control {action!r}"
        self.bridge.send({"kind": "ack", "id": control.get("id"), "action": action, "ok": ok, "message": message,
                          "estop": server.estopped, "log_active": server.log_active})
        self.status()

    def _unblind(self) -> str:
        sham = self.server.unblind()
        self.bridge.send({"kind": "unblinded", "sham": sham, "t": time.time()})
        return "condition revealed (logged)"

    def status(self) -> None:
        """Rates, latencies, stream and per-channel health: what the live page shows besides the messages."""
        s = self.server
        now = time.monotonic()
        desc = getattr(s.source, "description", None)
        offset = getattr(s.source, "clock_offset", None)
        self.bridge.send({
            "kind": "status", "t": time.time(), "safe": s.state.safe, "reason": s.state.reason,
            "estop": s.estopped, "log_active": s.log_active, "log_path": str(s.cfg.log_path) if s.log_active else None,
            "decision_rate": sum(1 for t in s.decision_times if t > now - 2.0) / 2.0, "decisions": s.decisions,
            "latency_ms": percentiles(list(s.latencies)[-200:]), "age_ms": percentiles(list(s.ages)[-200:]),
            "late_hops": s.late_hops, "withheld": dict(s.withheld), "samples": s.samples_total,
            "stream": {"source": desc.source if desc else None, "connected": s.layout is not None,
                       "clock_offset_ms": None if offset is None else round(offset * 1000, 3),
                       "ahead_ms_max": round(s.clock_ahead_max * 1000, 3),
                       "clock_faults": s.events["clock_fault"], "clock_fault_last": s.clock_fault_reason},
            "channels": self._channels(), "amplitude_passed": s.chain.amplitude.passed, "alignment": s.alignment.source,
            "events": dict(s.state.events) | dict(s.events), "outputs": s.outputs.stats,
            "console_dropped": self.bridge.dropped,
        })

    def _channels(self) -> dict[str, Any] | None:
        """Each channel's band-passed RMS against training, and which are flat or saturated right now (by the
        rules the decision chain applies: :class:`~exports.runtime.safety.FlatDetector` and
        :func:`~exports.runtime.safety.saturated_channels`)."""
        chain = self.server.chain
        if not chain.filtered.count:
            return None
        window = chain.filtered.latest(chain.filtered.count)  # at the model's rate
        rms = np.sqrt(np.mean(np.square(window, dtype=np.float64), axis=1))
        train = np.asarray(chain.norm["rms"], dtype=np.float64)
        ratio = np.where(train > 0, rms / np.where(train > 0, train, 1), 1.0)
        raw = chain.raw_ring.latest(chain.raw_ring.count)
        saturated = saturated_channels(raw, self.server.cfg.safety.saturation)
        return {"ratio": np.round(ratio, 3).tolist(), "flat": np.flatnonzero(chain.flat.flat_channels()).tolist(),
                "saturated": np.flatnonzero(saturated).tolist()}

    def close(self) -> None:
        self.status()
        self.bridge.close()
