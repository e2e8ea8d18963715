"""Lightning glue: the module that wraps any network, the data module, and training callbacks."""
