"""The held-files listing: what each index holds back, judged by the guard, from few rows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from pypicache.models import PRIVATE_SOURCE, File, Project, utcnow
from pypicache.policy.guard import Guard
from pypicache.services import Services

UPSTREAM = "pypi"
NOW = utcnow()
OLD = NOW - timedelta(days=30)
YOUNG = NOW - timedelta(hours=1)

ServicesFactory = Callable[..., Services]


@pytest.fixture
def make_services(
    tmp_path: Path,
    fresh_database_url: Callable[[], str],
    services_from: Callable[[dict[str, str]], Services],
) -> ServicesFactory:
    count = itertools.count()

    def build(**overrides: str) -> Services:
        return services_from(
            {
                "pypicache.data_dir": str(tmp_path / f"data{next(count)}"),
                "sqlalchemy.url": fresh_database_url(),
                "pypicache.upstreams": f"{UPSTREAM}=file://{tmp_path}/upstream/",
                "pypicache.follow_method": "off",
                **overrides,
            }
        )

    return build


def store(services: Services, project: str, *files: tuple[str, object], source: str = UPSTREAM):
    """A cached page of ``project``: (version, upload time) per file; private with ``@``."""
    private = source.startswith("@")
    with services.database.unit_of_work() as db:
        row = Project(source=source, name=project, display_name=project, private=private)
        db.add(row)
        db.flush()
        for version, uploaded in files:
            db.add(
                File(
                    project_id=row.id,
                    filename=f"{project.replace('-', '_')}-{version}-py3-none-any.whl",
                    version=version,
                    upload_time=uploaded,
                    upstream_url=None if private else f"file:///x/{project}-{version}.whl",
                    origin="private" if private else "upstream",
                )
            )


def listed(services: Services) -> list[tuple[str, str, str, str]]:
    return [(h.index, h.project, h.filename, h.kind) for h in services.held.listing().files]


def test_young_files_are_held_until_they_mature_and_exemptions_and_grants_are_not(
    make_services: ServicesFactory,
):
    services = make_services(
        **{"pypicache.cooldown": "7d", "pypicache.cooldown_exempt": "internal-*"}
    )
    store(services, "lib", ("1.0", OLD), ("2.0", YOUNG))
    store(services, "internal-tools", ("1.0", YOUNG))
    store(services, "urgent", ("1.1", YOUNG))
    services.guard.rules.add("allow-release", "urgent==1.1", reason="CVE", actor="root")

    listing = services.held.listing()
    assert [(h.index, h.filename, h.kind) for h in listing.files] == [
        ("main", "lib-2.0-py3-none-any.whl", "cooldown")
    ]
    (held,) = listing.files
    assert held.until == YOUNG + timedelta(days=7)
    assert held.reason.startswith("is held by the 7d cooldown until ")
    assert listing.total == 1
    assert listing.counts == {"cooldown": 1, "cutoff": 0, "block": 0}


def test_blocks_and_the_cutoff_hold_old_files_too(make_services: ServicesFactory):
    services = make_services(**{"pypicache.cutoff": (NOW - timedelta(days=10)).isoformat() + "Z"})
    store(services, "evil", ("1.0", OLD - timedelta(days=300)))
    store(services, "lib", ("1.0", OLD), ("1.1", NOW - timedelta(days=9)))
    store(services, "quiet", ("1.0", None))
    rule = services.guard.rules.add("block", "Evil", reason="typosquat <b>", actor="root")

    assert listed(services) == [
        ("main", "evil", "evil-1.0-py3-none-any.whl", "block"),
        ("main", "lib", "lib-1.1-py3-none-any.whl", "cutoff"),
    ]
    block = services.held.listing().files[0]
    assert block.reason == f"is blocked by rule {rule.id} (evil): typosquat <b>"
    assert block.until is None
    services.guard.rules.revoke(rule.id, actor="root")
    assert [h.project for h in services.held.listing().files] == ["lib"]


def test_a_block_that_ends_by_itself_is_listed_with_its_end(make_services: ServicesFactory):
    services = make_services()
    store(services, "evil", ("1.0", OLD))
    ends = (NOW + timedelta(days=2)).replace(microsecond=0)
    services.guard.rules.add("block", "evil", reason="until fixed", actor="root", until=ends)
    [held] = services.held.listing().files
    assert (held.kind, held.until) == ("block", ends)


def test_an_index_with_a_cooldown_or_rules_of_its_own_lists_what_it_holds(
    make_services: ServicesFactory,
):
    services = make_services()
    store(services, "lib", ("1.0", OLD), ("2.0", YOUNG))
    store(services, "other", ("1.0", OLD))
    actor = "root"
    services.indexes.create("prod", bases=["main"], description=None, uploaders=(), actor=actor)
    services.indexes.create("same", bases=["main"], description=None, uploaders=(), actor=actor)
    services.indexes.create("qa", bases=[UPSTREAM], description=None, uploaders=(), actor=actor)
    services.indexes.update("prod", cooldown=timedelta(days=3), actor=actor)
    services.guard.rules.add("block", "other", reason="not tested", actor=actor, index="qa")
    assert services.held.scopes() == ["main", "prod", "qa"], "same judges like main"

    assert listed(services) == [
        ("prod", "lib", "lib-2.0-py3-none-any.whl", "cooldown"),
        ("qa", "other", "other-1.0-py3-none-any.whl", "block"),
    ]
    assert "cooldown of index prod until" in services.held.listing().files[0].reason


def test_a_file_held_in_several_indexes_is_one_file_in_the_counts(
    make_services: ServicesFactory,
):
    services = make_services(**{"pypicache.cooldown": "7d"})
    store(services, "lib", ("2.0", YOUNG), ("2.1", YOUNG), ("2.2", YOUNG))
    services.indexes.create("prod", bases=["main"], description=None, uploaders=(), actor="r")
    services.indexes.update("prod", cooldown=timedelta(days=14), actor="r")

    listing = services.held.listing(limit=4)
    assert listing.total == 6
    assert len(listing.files) == 4
    assert listing.truncated
    assert [(h.filename, h.index) for h in listing.files[:2]] == [
        ("lib-2.0-py3-none-any.whl", "main"),
        ("lib-2.0-py3-none-any.whl", "prod"),
    ]
    assert services.held.counts() == {"cooldown": 3, "cutoff": 0, "block": 0}


def test_a_private_project_shadows_the_upstream_rows_of_its_name(make_services: ServicesFactory):
    services = make_services(**{"pypicache.cooldown": "7d"})
    store(services, "ours", ("9.0", YOUNG))  # cached before the name was claimed
    store(services, "ours", ("1.0", YOUNG), source=PRIVATE_SOURCE)
    assert listed(services) == [], "main serves the private page; private files are exempt"

    held = make_services(**{"pypicache.cooldown": "7d", "pypicache.cooldown_private": "true"})
    store(held, "ours", ("9.0", YOUNG))
    store(held, "ours", ("1.0", YOUNG), source=PRIVATE_SOURCE)
    assert listed(held) == [("main", "ours", "ours-1.0-py3-none-any.whl", "cooldown")]


def test_an_allowlist_that_leaves_a_project_out_lists_none_of_its_files(
    make_services: ServicesFactory,
):
    services = make_services(**{"pypicache.cooldown": "7d"})
    store(services, "acme-core", ("1.0", YOUNG))
    store(services, "leftpad", ("1.0", YOUNG))
    services.guard.rules.add("allow-only", "acme-*", reason="allowlist", actor="root")
    assert [h.project for h in services.held.listing().files] == ["acme-core"]


def test_only_the_candidates_the_database_selects_are_judged(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
):
    services = make_services(**{"pypicache.cooldown": "7d"})
    store(services, "big", *((f"1.{n}", OLD) for n in range(300)), ("2.0", YOUNG))
    store(services, "quiet", *((f"1.{n}", OLD) for n in range(100)))
    judged: list[str] = []
    hold_of = Guard.hold_of

    def counting(guard, context, facts):  # type: ignore[no-untyped-def]
        judged.append(facts.filename)
        return hold_of(guard, context, facts)

    monkeypatch.setattr(Guard, "hold_of", counting)
    assert [h.filename for h in services.held.listing().files] == ["big-2.0-py3-none-any.whl"]
    assert judged == ["big-2.0-py3-none-any.whl"]

    judged.clear()
    nothing = make_services()
    store(nothing, "big", ("2.0", YOUNG))
    assert nothing.held.listing().total == 0
    assert judged == [], "no cooldown, cutoff or block: nothing is even selected"


def test_routes_and_merges_decide_which_upstream_rows_an_index_serves(
    make_services: ServicesFactory, tmp_path: Path
):
    services = make_services(
        **{
            "pypicache.cooldown": "7d",
            "pypicache.upstreams": f"{UPSTREAM}=file://{tmp_path}/a/ extra=file://{tmp_path}/b/",
            "pypicache.routes": "acme-*=extra",
            "pypicache.merge": "both",
        }
    )
    for source in (UPSTREAM, "extra"):
        for project in ("acme-core", "plain", "both"):
            store(services, project, (f"1.0+{source}", YOUNG), source=source)
    assert [(h.project, h.filename) for h in services.held.listing().files] == [
        ("acme-core", "acme_core-1.0+extra-py3-none-any.whl"),  # routed: extra alone
        ("both", "both-1.0+extra-py3-none-any.whl"),  # merged: every upstream's
        ("both", "both-1.0+pypi-py3-none-any.whl"),
        ("plain", "plain-1.0+pypi-py3-none-any.whl"),  # the first upstream that has it
    ]
