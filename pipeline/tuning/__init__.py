"""Hyperparameter search and cross-validation: many trainings in-process on the prepared data, chosen on validation, tracked in MLflow."""
