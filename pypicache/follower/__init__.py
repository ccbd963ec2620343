"""Following the upstream's changelog to invalidate what changed."""
