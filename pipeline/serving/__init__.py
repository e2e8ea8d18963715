"""Serving: the MLflow pyfunc wrapper (models-from-code) and the registry helpers the CLI uses."""
