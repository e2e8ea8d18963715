"""Fitted preprocessing steps in scikit-learn's manner, written with pandas alone so data stages start fast.

Each step stores its settings in the constructor, learns in ``fit`` from the train split only, keeps what it
learned in attributes ending in ``_``, refuses to ``transform`` before ``fit`` or on other columns, and
round-trips through JSON (``to_dict`` / ``from_dict``) so nothing fitted is ever pickled.
"""
