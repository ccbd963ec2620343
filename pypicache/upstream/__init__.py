"""The upstream index: its pages and files over guarded HTTP."""
