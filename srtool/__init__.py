"""srtool: image super-resolution — train, export to ONNX, upscale, evaluate."""

__version__ = "0.1.0"
__all__ = ["__version__"]
