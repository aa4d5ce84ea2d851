"""Deploy stage: ONNX export checked against torch, and prediction on images."""
