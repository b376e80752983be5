"""The Open Inference Protocol over gRPC: inference.proto, its generated modules, the codec."""
