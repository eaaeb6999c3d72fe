"""Real-time runtime for the rig: numpy, scipy, onnxruntime, pylsl and I/O only (never torch, Lightning or MNE)."""
