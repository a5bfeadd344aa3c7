"""Entry point of the logged MLflow pyfunc model.

MLflow stores this file as source ("models from code") and runs it when the model is
loaded, so the logged model holds no pickled Python object.
"""

import mlflow

from metallo.tracking.console import without_mlflow_hints

with without_mlflow_hints():  # the model has an explicit signature: MLflow's hint about type hints does not apply
    from metallo.prediction.mlflow_model import MetalloPyfuncModel

mlflow.models.set_model(MetalloPyfuncModel())
