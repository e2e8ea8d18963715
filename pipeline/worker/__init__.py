"""A preloaded worker per workspace that stage commands hand their runs to (see :mod:`pipeline.worker.client`)."""
