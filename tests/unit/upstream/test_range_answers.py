"""Which upstream answers to a range request are passed on: only exactly that range."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from requests import Response
from requests.structures import CaseInsensitiveDict

from pypicache.upstream.client import UpstreamClient

START, END, SIZE = 100, 199, 1000


def answer(status: int, headers: dict[str, str]) -> Response:
    response = Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    return response


header_text = st.text(max_size=40) | st.sampled_from(
    ["bytes 100-199/1000", "bytes 100-199/*", "bytes 100-198/1000", " bytes 100-199/1000 "]
)


@given(
    st.sampled_from([200, 206, 416]),
    header_text,
    st.text(max_size=12) | st.sampled_from(["100", "99", "0100"]),
    st.none() | st.sampled_from(["gzip", "identity", "br"]),
)
@example(206, "bytes 100-199/1000", "100", None)
def test_only_exactly_the_range_asked_of_a_file_of_the_pages_size_is_passed_on(
    status: int, content_range: str, length: str, encoding: str | None
):
    headers = {"Content-Range": content_range, "Content-Length": length}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    passed = UpstreamClient._is_exact_range(answer(status, headers), START, END, SIZE)
    if passed:
        assert status == 206
        text = content_range.strip()
        assert text.startswith("bytes ")
        numbers = text.removeprefix("bytes ").replace("-", "/").split("/")
        assert all(n.isascii() and n.isdigit() for n in numbers)
        assert [int(n) for n in numbers] == [START, END, SIZE]
        assert int(length.strip()) == END - START + 1
        assert encoding in (None, "identity")
    if (status, content_range, length, encoding) == (206, "bytes 100-199/1000", "100", None):
        assert passed
