"""zoo-tabular: a keras-zoo plugin for small tables of numbers."""

__version__ = "1.0.0"
