"""One module per DVC stage: a pure function that does the work and a thin ``main`` that does the I/O.

Started as ``python -m pipeline.stages.<name>`` (as ``dvc.yaml`` runs them), a stage first offers its run to the
workspace's worker, if one is running (``python -m pipeline worker start``): the worker runs it in a process that
already holds torch, Lightning and MLflow, and this process exits with that run's exit code. Otherwise nothing
happens here and the stage runs in this process (see :mod:`pipeline.worker.client`).
"""

from pipeline.worker.client import hand_off

hand_off()
