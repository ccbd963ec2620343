"""Entry point: ``python bench/run.py [--quick] [--out DIR] [--keep]`` (see bench/benchmark.py).

Run it with the project's venv (``.venv/bin/python bench/run.py``); it needs nginx and wrk
(``apt-get install -y nginx wrk``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` and `tests.support` import from the repository

from bench.benchmark import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
