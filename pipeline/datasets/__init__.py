"""Real datasets vendored with the package (see README.md for sources and citations)."""
