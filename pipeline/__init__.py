"""A reproducible deep-learning pipeline: ingest -> split -> clean -> scale -> train -> evaluate.

This package stays light on import: the data stages must start in well under a second, so nothing here
imports torch, Lightning, MLflow or scikit-learn at module level.
"""

__version__ = "0.1.0"
