"""The /simple/ list: only project names, linked by their normalized form, escaped."""

from __future__ import annotations

import json
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pypicache.cache.projectlist import UPSTREAM_NAMES, ProjectList
from pypicache.upstream.entries import valid_names

VALID = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
NAMES = st.one_of(
    st.from_regex(VALID),
    st.text(st.characters(exclude_categories=("Cs",))),
    st.sampled_from(['"><script>x</script>', "../admin", "a b", "a\tb", "a\n", "<b>", "&amp;"]),
)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Links(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.links: list[tuple[str | None, str]] = []
        self._in_anchor = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append((dict(attrs).get("href"), ""))
            self._in_anchor = True

    def handle_endtag(self, tag: str) -> None:
        self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)


@given(st.lists(NAMES))
def test_only_project_names_reach_the_stored_upstream_list(names):
    pairs = list(valid_names(iter(names), None))
    assert pairs == [(normalized(n), n) for n in names if VALID.match(n) and len(n) <= 255]


class Held:
    """Projects as a database might hold them, had nothing checked them on the way in."""

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def fingerprint(self) -> object:
        return 1

    def names(self) -> list[tuple[str, str]]:
        return [(n, n) for n in self._names]

    def serials(self) -> dict[str, int]:
        return {}


@given(st.lists(NAMES, max_size=8))
@settings(max_examples=100)
def test_the_rendered_list_links_each_valid_name_to_its_normalized_form(names):
    local = {normalized(n): n for n in names if VALID.match(n)}
    with tempfile.TemporaryDirectory() as directory:
        projects = ProjectList(
            Path(directory),
            [],
            Held(names),  # as if the database held anything
            ttl=60,
        )
        html = projects.current().html_path.read_text(encoding="utf-8")
    parsed = Links(html)
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "body", "a"}
    assert sorted(parsed.links) == sorted((f"{key}/", value) for key, value in local.items())


@given(st.lists(NAMES, max_size=8))
@settings(max_examples=100)
def test_the_json_list_names_each_valid_name_once(names):
    local = {normalized(n): n for n in names if VALID.match(n)}
    with tempfile.TemporaryDirectory() as directory:
        projects = ProjectList(Path(directory), [], Held(names), ttl=60)
        data = json.loads(projects.current().json_path.read_bytes())
    assert sorted(p["name"] for p in data["projects"]) == sorted(local.values())


def test_a_tampered_upstream_list_file_still_renders_as_text(tmp_path: Path):
    """The names file is ours, but the renderings escape what it holds all the same."""
    (tmp_path / UPSTREAM_NAMES.format("pypi")).write_text(
        'x"><script>1</script>\t<b>"&\n', encoding="utf-8"
    )
    rendered = ProjectList(tmp_path, [("pypi", None)], Held([]), ttl=60).current()
    html = rendered.html_path.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "<b>" not in html
    assert Links(html).links == [('x"><script>1</script>/', '<b>"&')]
    data = json.loads(rendered.json_path.read_bytes())
    assert data["projects"] == [{"name": '<b>"&', "_last-serial": 0}]
