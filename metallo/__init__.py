"""Metallo: learn a scalar property (DOS) from metallographic micrographs and local spectra.

Importing ``metallo`` registers its models and its image processor with the ``transformers`` Auto classes
(``AutoConfig``, ``AutoModel``, ``AutoImageProcessor``), so a saved model folder loads by name-free code:

    import metallo
    from transformers import AutoImageProcessor, AutoModel
    model = AutoModel.from_pretrained("models/model")
    processor = AutoImageProcessor.from_pretrained("models/model")

The registration needs ``torch`` and ``transformers``, which take seconds to import; ``import metallo`` alone
stays cheap (``metallo --help`` must not pay for them). It registers at once when ``transformers`` is already
imported, and otherwise as soon as it is (an import hook, :class:`_RegisterWithTransformers`).

    from metallo import predict
    result = predict("models/model", "new/manifest.csv")
    print(result.predictions)
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"


def register_auto_classes() -> None:
    """Register Metallo's configs, models and image processor with the ``transformers`` Auto classes.

    Each module registers its own classes when its import completes (``metallo.models``: AutoConfig and
    AutoModel; ``metallo.processing``: AutoImageProcessor and, through the configs, the models). When one
    of them is being imported right now (it is what imported ``transformers``), it will do so itself.
    """
    if any(
        getattr(getattr(sys.modules.get(name), "__spec__", None), "_initializing", False)
        for name in ("metallo.models", "metallo.processing")
    ):
        return
    import metallo.models  # noqa: F401
    import metallo.processing  # noqa: F401


class _RegisterWithTransformers(importlib.abc.MetaPathFinder):
    """Registers the Auto classes right after ``transformers`` itself has been imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module) -> None:
            loader_exec(module)
            try:
                register_auto_classes()
            except Exception as err:  # noqa: BLE001 - transformers must stay importable
                warnings.warn(f"metallo could not register its models with transformers ({err})", stacklevel=2)

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterWithTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTransformers())


def predict(model_dir, manifest, **kwargs):
    """Predict DOS for the samples of ``manifest``; see :func:`metallo.prediction.manifest.predict`."""
    from metallo.prediction.manifest import predict as _predict

    return _predict(model_dir, manifest, **kwargs)


__all__ = ["predict", "register_auto_classes", "__version__"]
