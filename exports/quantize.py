"""Optional int8 quantisation of an exported model, refused when it costs too much accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets.atomic import atomic_path


def _predict(path: Path, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["logits"], {"signals": X[i : i + 64]})[0] for i in range(0, len(X), 64)]).argmax(1)


def quantize_checked(path: Path, X: np.ndarray, y: np.ndarray | None, max_drop: float) -> dict[str, Any]:
    """Replace ``path`` by its dynamically int8-quantised version if accuracy drops by at most ``max_drop``.

    Accuracy is measured on the labelled validation windows ``(X, y)``; without labels, on agreement with
    the float model's predictions. Beyond the tolerance a ValueError is raised and ``path`` is unchanged.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    with atomic_path(path, ".int8.onnx") as tmp:
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
        reference = y if y is not None else _predict(path, X)
        before = float((_predict(path, X) == reference).mean())
        after = float((_predict(tmp, X) == reference).mean())
        report = {"type": "dynamic int8 (weights)", "metric": "accuracy" if y is not None else "agreement with float",
                  "before": before, "after": after, "drop": before - after, "tolerance": max_drop,
                  "size_bytes": {"float32": path.stat().st_size, "int8": tmp.stat().st_size}}
        if before - after > max_drop:  # raised inside: the temporary file is removed, path unchanged
            raise ValueError(
                f"int8 quantisation drops {report['metric']} from {before:.3f} to {after:.3f} "
                f"(more than the tolerance {max_drop}); export without --quantize."
            )
    return report
