"""The ceiling of our own stack: waitress and a dict of page bytes, nothing else.

    python -m bench.bare_server --port P --pages DIR [--threads 16]

DIR holds ``<project>/index.html`` and ``<project>/index.json`` (the static copy nginx
serves).  ``GET /simple/<project>/`` answers the JSON bytes when the Accept header asks for
PEP 691 JSON and the HTML bytes otherwise, with the headers pypicache sends.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import waitress

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html; charset=utf-8"
Page = tuple[bytes, list[tuple[str, str]]]


@lru_cache(maxsize=64)
def _wants_json(accept: str) -> bool:
    return JSON_TYPE in accept


def _page(body: bytes, content_type: str) -> Page:
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    headers = [
        ("Content-Type", content_type),
        ("ETag", etag),
        ("Vary", "Accept"),
        ("Cache-Control", "max-age=60, public"),
        ("Content-Length", str(len(body))),
    ]
    return body, headers


def load_pages(directory: Path) -> dict[str, tuple[Page, Page]]:
    """``/simple/<project>/`` -> (HTML page, JSON page)."""
    pages = {}
    for project in sorted(p for p in directory.iterdir() if p.is_dir()):
        html = _page((project / "index.html").read_bytes(), HTML_TYPE)
        json = _page((project / "index.json").read_bytes(), JSON_TYPE)
        pages[f"/simple/{project.name}/"] = (html, json)
    return pages


def make_app(pages: dict[str, tuple[Page, Page]]) -> Callable[..., Iterable[bytes]]:
    not_found = b"404 Not Found\n"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        pair = pages.get(environ.get("PATH_INFO", ""))
        if pair is None:
            if environ.get("PATH_INFO") == "/health":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [not_found]
        body, headers = pair[1] if _wants_json(environ.get("HTTP_ACCEPT", "")) else pair[0]
        start_response("200 OK", headers)
        return [body]

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pages", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    pages = load_pages(args.pages)
    print(f"bare waitress serving {len(pages)} pages on port {args.port}", flush=True)
    waitress.serve(
        make_app(pages), host="127.0.0.1", port=args.port, threads=args.threads, ident="bare"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
