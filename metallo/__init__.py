"""Metallo: learn a scalar property (DOS) from metallographic micrographs and local spectra.

``import metallo`` is cheap (``metallo --help`` must not pay for ``torch`` and ``transformers``). Importing
:mod:`metallo.models` registers Metallo's configs, models and image processor with the ``transformers``
Auto classes (``AutoConfig``, ``AutoModel``, ``AutoImageProcessor``), so a saved model folder loads by
name-free code:

    import metallo.models
    from transformers import AutoImageProcessor, AutoModel
    model = AutoModel.from_pretrained("models/model")
    processor = AutoImageProcessor.from_pretrained("models/model")

    from metallo import predict
    result = predict("models/model", "new/manifest.csv")
    print(result.predictions)
"""

from __future__ import annotations

__version__ = "0.1.0"


def predict(model_dir, manifest, **kwargs):
    """Predict DOS for the samples of ``manifest``; see :func:`metallo.prediction.manifest.predict`."""
    from metallo.prediction.manifest import predict as _predict  # lazy: `import metallo` stays cheap

    return _predict(model_dir, manifest, **kwargs)


__all__ = ["predict", "__version__"]
