"""pypicache: a caching private Python package index."""

__version__ = "0.1.0"
