"""Shipped ONNX models: one folder per model holding ``model.onnx`` and ``card.md``."""
