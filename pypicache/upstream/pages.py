"""An upstream's project page into checked file facts, by its media type: PEP 691 JSON
typed (``typedpage``) or, with values of other types, plain (``jsonpage``); HTML
through pypi_simple."""

from __future__ import annotations

import json
from email.message import Message
from typing import TYPE_CHECKING

from pypicache.upstream.entries import InvalidPage, UpstreamPage, checked_page
from pypicache.upstream.jsonpage import read_json_page
from pypicache.upstream.typedpage import decode, read_typed_page

if TYPE_CHECKING:
    from pypicache.ops.metrics import Metrics


def parse_page(
    name: str,
    body: bytes | bytearray,
    content_type: str | None,
    url: str,
    *,
    serial: int | None = None,
    etag: str | None = None,
    metrics: Metrics | None = None,
) -> UpstreamPage:
    """The project's page in ``body`` (read by us, bounded), every entry checked.

    JSON goes straight into file facts; HTML through pypi_simple's parser.
    """
    header = Message()
    header["Content-Type"] = content_type or "text/html"
    media_type = header.get_content_type()
    charset = header.get_param("charset")
    if media_type == "application/vnd.pypi.simple.v1+json":
        typed = decode(body)
        read = (
            read_typed_page(name, typed, url, serial=serial, etag=etag, metrics=metrics)
            if typed is not None
            else None
        )
        if read is not None:
            return read
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidPage(f"unparsable page: {exc}") from exc
        return read_json_page(name, data, url, serial=serial, etag=etag, metrics=metrics)
    if media_type not in ("application/vnd.pypi.simple.v1+html", "text/html"):
        raise InvalidPage(f"not a project page: Content-Type {media_type!r}")
    # Only for HTML: pypi_simple brings its parsers (bs4, lxml, pydantic: 16 MB) with it.
    from pypi_simple import ProjectPage

    try:
        page = ProjectPage.from_html(
            project=name,
            html=bytes(body),
            base_url=url,
            from_encoding=charset if isinstance(charset, str) else None,
        )
    except Exception as exc:
        raise InvalidPage(f"unparsable page: {exc}") from exc
    if not page.packages and page.repository_version is None:
        # Neither a link nor the simple API's meta tag: a portal's or an error's HTML.
        raise InvalidPage("HTML without links or pypi:repository-version: not a page")
    return checked_page(name, page, serial, etag, metrics=metrics, base_url=url)
