"""Thin views: they ask the index service and turn its answers into HTTP."""
