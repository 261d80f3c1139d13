"""Preflight: a release's input is checked before anything exists, and only what matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.base.errors import SourceError, UsageError
from deployer.cloud.port import EnvironmentView
from deployer.core.strategy import ReleaseContext, load_strategy
from deployer.etherpad import preflight
from deployer.etherpad.preflight import check_releases
from tests.support.etherpad import make_release_repo, tiny_etherpad


class FakeCloud:
    def __init__(self, name: str, view: EnvironmentView | None = None) -> None:
        self.name = name
        self.view = view
        # As the adapters say: the local cloud's machines are this one, AWS's are not.
        self.fetches_releases_on_this_machine = name == "local"

    def describe_environment(self, strategy: str) -> EnvironmentView | None:
        return self.view


def context(cloud, release="1.8.18", from_release="1.8.17") -> ReleaseContext:
    return ReleaseContext(release=release, from_release=from_release, cloud=cloud,
                          workdir=Path("/nonexistent"), on_event=lambda e: None,
                          source="github")


@pytest.fixture
def checked(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(preflight, "check_releases",
                        lambda source, releases: calls.append(list(releases)))
    return calls


def existing(status: str = "UPDATE_COMPLETE") -> EnvironmentView:
    return EnvironmentView(strategy="packer", stack_name="etherpad-packer", stack_status=status,
                           url="http://127.0.0.1:1/", parameters={}, outputs={}, instances=[],
                           release="1.8.16")


def test_a_new_environment_needs_both_releases(checked):
    load_strategy("packer").preflight(context(FakeCloud("local")))
    assert checked == [["1.8.18", "1.8.17"]]


def test_an_existing_environment_needs_only_the_new_release(checked):
    load_strategy("packer").preflight(context(FakeCloud("local", existing())))
    assert checked == [["1.8.18"]]
    load_strategy("packer").preflight(context(FakeCloud("local", existing("ROLLBACK_COMPLETE"))))
    assert checked[-1] == ["1.8.18", "1.8.17"]  # a rolled-back creation is created again


def test_no_starting_release_is_a_usage_error_before_any_source_is_asked(checked):
    with pytest.raises(UsageError, match="pass --from VERSION"):
        load_strategy("cloudformation").preflight(context(FakeCloud("local"), from_release=None))
    assert checked == []


def test_on_aws_only_what_this_machine_fetches_is_checked_here(checked):
    load_strategy("packer").preflight(context(FakeCloud("aws")))  # the build instance fetches
    load_strategy("cloudformation").preflight(context(FakeCloud("aws")))  # user data fetches
    assert checked == []
    load_strategy("codedeploy").preflight(context(FakeCloud("aws")))  # bundled right here
    assert checked == [["1.8.18", "1.8.17"]]


def test_check_releases_against_a_mirror_and_a_directory(tmp_path: Path):
    repo = tmp_path / "mirror.git"
    make_release_repo(repo, {"1.8.17": tiny_etherpad, "1.8.18": tiny_etherpad})
    assert check_releases(str(repo), ["1.8.18", "1.8.17"]).spec == str(repo.resolve())
    with pytest.raises(SourceError, match=r"has no tag 1\.9\.0 \(its tags: 1\.8\.17, 1\.8\.18\)"):
        check_releases(str(repo), ["1.9.0"])
    tree = tmp_path / "one-release"
    tree.mkdir()
    tiny_etherpad(tree, "1.8.18")
    check_releases(str(tree), ["1.8.18"])
    with pytest.raises(SourceError, match=r"holds Etherpad 1.8.18, not 1.8.17"):
        check_releases(str(tree), ["1.8.18", "1.8.17"])
    (tree / "src" / "package.json").write_text("{not json")
    with pytest.raises(SourceError, match=r"no readable src/package.json"):
        check_releases(str(tree), ["1.8.18"])


@pytest.mark.parametrize("spec", ["/srv/mirrors/etherpad-lite.git", "file:///srv/etherpad.git",
                                  "http://127.0.0.1:8080/etherpad-lite.git",
                                  "https://localhost/etherpad-lite.git"])
@pytest.mark.parametrize("strategy", ["cloudformation", "packer"])
def test_on_aws_a_source_only_this_machine_reads_is_refused(checked, strategy, spec):
    ctx = context(FakeCloud("aws"))
    ctx.source = spec
    with pytest.raises(SourceError, match="an EC2 instance") as err:
        load_strategy(strategy).preflight(ctx)
    assert "\n" not in str(err.value)
    assert checked == []


def test_on_aws_codedeploy_bundles_a_local_mirror_here(checked):
    ctx = context(FakeCloud("aws"))
    ctx.source = "/srv/mirrors/etherpad-lite.git"
    load_strategy("codedeploy").preflight(ctx)
    assert checked == [["1.8.18", "1.8.17"]]


def test_a_quote_in_a_source_is_refused_on_every_target(checked):
    for target in ("local", "aws"):
        ctx = context(FakeCloud(target))
        ctx.source = "https://git.example.com/x.git';touch /tmp/pwned;'"
        with pytest.raises(SourceError, match="holds characters a source may not have"):
            load_strategy("cloudformation").preflight(ctx)
    assert checked == []
