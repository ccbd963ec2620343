"""Benchmarks of pypicache against nginx, a bare waitress app and the fake upstream."""
