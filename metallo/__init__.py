"""Metallo: learn a scalar property (DOS) from metallographic micrographs and local spectra.

Importing ``metallo`` registers its models with ``transformers.AutoConfig`` / ``AutoModel``.

    from metallo import predict
    result = predict("models/model", "new/manifest.csv")
    print(result.predictions)
"""
from metallo import models  # noqa: F401 - registers ToyNet and MetalloNet with the Auto classes

__version__ = "0.1.0"


def predict(model_dir, manifest, **kwargs):
    """Predict DOS for the samples of ``manifest``; see :func:`metallo.prediction.manifest.predict`."""
    from metallo.prediction.manifest import predict as _predict

    return _predict(model_dir, manifest, **kwargs)


__all__ = ["predict", "__version__"]
