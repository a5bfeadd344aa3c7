"""The model card's text: a Jinja template that :func:`metallo.hub.card_text` renders with
``huggingface_hub.ModelCard.from_template`` (``card_data``: the YAML of its ``ModelCardData``).

Placeholders: ``name`` (``model.name``),
``type_name`` (the model class), ``n_spectra``, ``spectrum_length``, ``rows``, ``cols`` (the grid),
``data_table``, ``label_mean``, ``label_std``, ``synthetic_note``, ``model_table``, ``train_table``,
``metrics_table``, ``train_samples`` and ``val_samples``.
"""

from __future__ import annotations

CARD_TEMPLATE = """---
{{ card_data }}
---

# Metallo {{ name }}: DOS from a micrograph and its reflectance spectra

A `{{ type_name }}` trained by the Metallo pipeline (`model.name: {{ name }}`).
It predicts one scalar label, **DOS**, from a metallographic micrograph and {{ n_spectra }} reflectance
spectra of {{ spectrum_length }} points measured on a {{ rows }}×{{ cols }} grid over the same field of view.

## How to use

The classes come from the `metallo` Python package (install this project); nothing is run from this folder.

```python
import metallo.models               # registers the model and processor with the transformers Auto classes
from transformers import AutoImageProcessor, AutoModel

model = AutoModel.from_pretrained("path/or/repo").eval()
processor = AutoImageProcessor.from_pretrained("path/or/repo")
# images: PIL images or uint8 H×W×3 arrays; spectra: raw, N×{{ n_spectra }}×{{ spectrum_length }}
inputs = processor(images, spectra=spectra)
dos = model(**inputs).predictions
```

From the command line, with intervals: `metallo predict --model path/to/folder --manifest new/manifest.csv`.

## Training data

{{ data_table }}

Labels of the training split: mean {{ label_mean }}, sd {{ label_std }}.
{{ synthetic_note }}

## Parameters

Model (`model:` in `params.yaml`):

{{ model_table }}

Training (`train:`, selected):

{{ train_table }}

## Metrics

The kept model on the validation split (model selection; {{ val_samples }} samples), DOS in
label units (the names of `metrics/train.json` and MLflow):

{{ metrics_table }}

Test metrics are computed after training by the pipeline's `evaluate` stage (`metrics/eval.json`, and the
MLflow run and registered model version), beside the classical baseline and the mean of the training labels.

## Intended use

Estimating DOS for specimens prepared, imaged and measured like the training data: the same camera
geometry (`convert` settings in `preprocessor_config.json`), the same {{ rows }}×{{ cols }} measurement grid and
spectrum length, and labels in the training range. Each prediction can carry a split-conformal interval
from the validation residuals (`calibration.json`, `metallo predict --interval`).

## Limitations

- Trained on {{ train_samples }} samples; specimens, microscopes or spectrometers unlike the
  training data shift the predictions, and the intervals assume new samples resemble the validation split
  (the evaluate stage reports the coverage reached on the test specimen).
- Compare with the classical baseline (ridge on SNV spectra and image statistics) reported by every
  evaluation before relying on the deep model.
- Images must be 8-bit RGB after the convert geometry, or be scaled by the bit depth in
  `preprocessor_config.json` first; spectra must be raw (the processor normalises them).
"""
