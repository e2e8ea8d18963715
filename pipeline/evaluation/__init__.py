"""Evaluation: metrics for every split (this package), computed by scikit-learn and torchmetrics."""
