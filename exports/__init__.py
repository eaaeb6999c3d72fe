"""Export to ONNX with metadata and parity checks; `exports.runtime` is the light real-time server."""
