"""Image lifecycle on any target: the prune plan, and list/prune on the local cloud."""

from __future__ import annotations

import pytest

from deployer.base.errors import StateError, UsageError
from deployer.cloud.port import Image
from deployer.core.images import plan_prune, prune_images
from tests.support.fake_cloud import UnscriptedCloud


def image(n: int) -> Image:
    return Image(image_id=f"ami-{n}", name=f"etherpad-1.8.{n}", release=f"1.8.{n}",
                 created_at=1000.0 + n)


def test_plan_keeps_the_newest_and_every_image_in_use():
    images = [image(n) for n in (3, 1, 4, 2, 5)]
    plan = plan_prune(images, in_use={"ami-1"}, keep=2)
    assert [i.image_id for i in plan.keep] == ["ami-5", "ami-4"]
    assert [i.image_id for i in plan.in_use] == ["ami-1"]
    assert [i.image_id for i in plan.deregister] == ["ami-3", "ami-2"]
    assert plan_prune(images, set(), keep=10).deregister == []
    assert len(plan_prune(images, set(), keep=0).deregister) == 5
    with pytest.raises(UsageError):
        plan_prune(images, set(), keep=-1)


class Cloud(UnscriptedCloud):
    """Just the image verbs; one image comes into use between the plan and its removal."""

    name = "fake"

    def __init__(self) -> None:
        self.images = [image(n) for n in (1, 2, 3)]
        self.removed: list[str] = []

    def list_images(self):
        return list(self.images)

    def deregister_image(self, image_id):
        if image_id == "ami-2":
            raise StateError("image ami-2 is in use")
        self.removed.append(image_id)
        return [f"snap-{image_id}"]



def test_prune_reports_what_the_cloud_refused():
    cloud = Cloud()
    result = prune_images(cloud, keep=1)
    assert cloud.removed == ["ami-1"] and result.deleted_snapshots == ["snap-ami-1"]
    assert result.refused == {"ami-2": "image ami-2 is in use"}
    assert prune_images(Cloud(), keep=1, dry_run=True).deregistered == []


@pytest.mark.slow
def test_images_list_and_prune_on_the_local_cloud(tmp_path, monkeypatch, capsys):
    from deployer.cli.app import main
    from deployer.localcloud.client import LocalCloud
    from deployer.localcloud.state import CloudState, ImageRecord
    from deployer.localcloud.supervisor import cloud_dir

    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    state = CloudState()
    for n in (1, 2, 3):
        root = home / "images" / f"ami-0000000{n}" / "root"
        (root / "opt").mkdir(parents=True)
        state.images[f"ami-0000000{n}"] = ImageRecord(
            image_id=f"ami-0000000{n}", name=f"etherpad-1.8.{n}", root=str(root), size_bytes=n * 10**6,
            created_at=1000.0 + n, tags={"Application": "etherpad", "Release": f"1.8.{n}"})
    cloud_dir(home).mkdir(parents=True)
    (cloud_dir(home) / "state.json").write_text(state.model_dump_json())
    try:
        with pytest.raises(SystemExit) as exited:
            main(["images", "list"])
        out = capsys.readouterr().out
        assert exited.value.code == 0 and "ami-00000003" in out and "1.8.1" in out and "3 MB" in out
        with pytest.raises(SystemExit) as exited:
            main(["images", "prune", "--keep", "1"])
        out = capsys.readouterr().out
        assert exited.value.code == 0, out
        assert "deregistered ami-00000001" in out and "deregistered ami-00000002" in out
        assert "1 newest kept, 0 in use kept, 2 deregistered" in out
        assert [i.image_id for i in LocalCloud(home).list_images()] == ["ami-00000003"]
        assert not (home / "images" / "ami-00000001").exists() and (home / "images" / "ami-00000003").exists()
    finally:
        LocalCloud(home).stop_supervisor()
        import structlog

        structlog.reset_defaults()
