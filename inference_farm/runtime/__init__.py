"""Loading, checking and caching ONNX models with onnxruntime, for the workers."""
