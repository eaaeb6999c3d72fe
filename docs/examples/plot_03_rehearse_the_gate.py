"""
Rehearse the closed loop with a rest gate
=========================================

Before a session, rehearse what the hand would have done: stream a cued recording through the rig's own
decision chain (causal filters chunk by chunk, the decoder, smoothing, the gate) and score the commands against
the cues. A *rest gate* keeps the hand still until the decoder is confident that the window is not rest
(``threshold``), for at least ``dwell_s``; higher settings move the hand less where no movement was cued, and
answer fewer of the movement cues. This is ``bmi rehearse MODEL.onnx CONFIG.yaml --rest-gate rest``.
"""

# %%
# The exported model and a cued recording
# ---------------------------------------
# :func:`pipeline.rehearse.read_cued` reads the held-out run with its cues, in the model's channels and order.
import matplotlib.pyplot as plt
import yaml
from _tutorial_run import WORK, recordings, trained_run

from datasets.config import DataConfig
from datasets.typed import from_mapping
from exports.onnx import export_run, read_model_metadata
from pipeline.rehearse import choose_gate, read_cued, rehearse

summary = trained_run("logvar")
model = WORK / "logvar.onnx"
if not model.is_file():
    export_run(summary["run_dir"], out=model)
files, config = recordings()
data_cfg = from_mapping(DataConfig, yaml.safe_load(config.read_text())["data"], "data")
ch_names = read_model_metadata(model)["preprocessing"]["ch_names"]
cued = read_cued(files[-1:], data_cfg, ch_names)
print(f"{len(cued[0].cues)} cues, each {cued[0].cue_s:.1f} s, in {cued[0].path.name}")

# %%
# Every gate setting, one decoding
# --------------------------------
# :func:`pipeline.rehearse.rehearse` decodes each recording once and runs only the server's rules again for each
# setting; each row holds the scores.
settings = [{}] + [{"threshold": t, "dwell_s": 0.2} for t in (0.4, 0.5, 0.6, 0.7, 0.8)]
rows = rehearse(model, cued, settings, rest_gate="rest")
for setting, row in zip(settings, rows):
    print(setting or "no gate", f"hits {row['movement_hit_rate']:.2f}",
          f"moving with no cue {row['movement_time_uncued']:.2f}")

# %%
# The trade-off
# -------------
# Share of movement cues the hand answered against the share of the time with no movement cue in which it
# moved. :func:`pipeline.rehearse.choose_gate` picks the setting that moves least with no cue among those that
# answer at least half the movement cues (``--min-hits 0.5``).
chosen = choose_gate(rows, min_hits=0.5)
fig, ax = plt.subplots(figsize=(5.5, 4))
for setting, row in zip(settings, rows):
    ax.plot(row["movement_time_uncued"], row["movement_hit_rate"], "o",
            color="C3" if row is chosen else "C0", ms=8 if row is chosen else 6)
    ax.annotate("no gate" if not setting else f"{setting['threshold']:g}",
                (row["movement_time_uncued"], row["movement_hit_rate"]), textcoords="offset points",
                xytext=(6, -14) if not setting else (6, 2))
ax.set_xlabel("share of the time with no movement cue in which the hand moved")
ax.set_ylabel("movement cues answered")
ax.set_title("Rest gate threshold (dwell 200 ms); red: chosen")
ax.grid(alpha=0.3)
fig.tight_layout()
