"""Lightning glue: the module that wraps any network, the data module, and training callbacks; and, with no
Lightning import, the scaled splits as tensors (:mod:`pipeline.training.arrays`) that evaluation reads too."""
