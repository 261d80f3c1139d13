"""EC2 images (AMIs) of Etherpad: list them, find the ones in use, deregister the rest.

deployer's images carry the tags ``Application=etherpad`` and ``Release=<release>`` (the
Packer template sets them; :meth:`Images.ensure_tags` makes sure). Size is the sum of the
image's EBS snapshots; deregistering an image deletes those snapshots too, or they would
go on costing money unseen.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from deployer.aws.errors import Caller
from deployer.base.errors import NotFound, StateError
from deployer.cloud.port import Image

APPLICATION_TAG = {"Key": "Application", "Value": "etherpad"}
GIB = 2**30


def _created(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def snapshot_ids(image: dict) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")]


class Images:
    def __init__(self, caller: Caller, ec2: Any) -> None:
        self.caller = caller
        self.ec2 = ec2

    def _describe(self, **filters: Any) -> builtins.list[dict]:
        return list(self.caller.pages(self.ec2, "describe_images", "Images", **filters))

    def _sizes(self, images: builtins.list[dict]) -> dict[str, int]:
        ids = sorted({s for image in images for s in snapshot_ids(image)})
        sizes: dict[str, int] = {}
        for start in range(0, len(ids), 200):
            try:
                answer = self.caller.pages(self.ec2, "describe_snapshots", "Snapshots",
                                           SnapshotIds=ids[start:start + 200])
                sizes.update({s["SnapshotId"]: int(s.get("VolumeSize", 0)) * GIB
                              for s in answer})
            except NotFound:
                pass  # a snapshot deleted meanwhile counts as nothing
        return sizes

    def to_port(self, image: dict, sizes: dict[str, int]) -> Image:
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        return Image(image_id=image["ImageId"], name=image.get("Name", ""),
                     release=tags.get("Release"),
                     size_bytes=sum(sizes.get(s, 0) for s in snapshot_ids(image)),
                     created_at=_created(image.get("CreationDate")), tags=tags)

    def list(self) -> builtins.list[Image]:
        # Only available images: one still being created belongs to a bake in progress.
        images = self._describe(Owners=["self"], Filters=[
            {"Name": "tag:Application", "Values": [APPLICATION_TAG["Value"]]},
            {"Name": "state", "Values": ["available"]}])
        sizes = self._sizes(images)
        return sorted((self.to_port(i, sizes) for i in images), key=lambda i: i.created_at)

    def get(self, image_id: str) -> Image:
        images = self._describe(ImageIds=[image_id])
        if not images:
            raise NotFound(f"image {image_id} does not exist")
        return self.to_port(images[0], self._sizes(images))

    def ensure_tags(self, image_id: str, release: str | None) -> None:
        """The lifecycle relies on the tags; a template edited to drop them must not hide images."""
        tags = [APPLICATION_TAG] + ([{"Key": "Release", "Value": release}] if release else [])
        images = self._describe(ImageIds=[image_id])
        resources = [image_id] + (snapshot_ids(images[0]) if images else [])
        self.caller(self.ec2, "create_tags", Resources=resources, Tags=tags)

    def used_by_instances(self, image_ids: builtins.list[str]) -> set[str]:
        if not image_ids:
            return set()
        used = set()
        for reservation in self.caller.pages(
                self.ec2, "describe_instances", "Reservations",
                Filters=[{"Name": "image-id", "Values": image_ids},
                         {"Name": "instance-state-name",
                          "Values": ["pending", "running", "stopping", "stopped"]}]):
            used |= {i["ImageId"] for i in reservation.get("Instances", [])}
        return used

    def used_by_launch_templates(self, launch_template_ids: builtins.list[str]) -> set[str]:
        used = set()
        for template_id in launch_template_ids:
            try:
                versions = self.caller(self.ec2, "describe_launch_template_versions",
                                       LaunchTemplateId=template_id,
                                       Versions=["$Latest", "$Default"])
            except NotFound:
                continue
            used |= {v["LaunchTemplateData"].get("ImageId")
                     for v in versions.get("LaunchTemplateVersions", [])
                     if v.get("LaunchTemplateData", {}).get("ImageId")}
        return used

    def deregister(self, image_id: str, in_use: set[str]) -> builtins.list[str]:
        if image_id in in_use:
            raise StateError(f"image {image_id} is in use by a launch template, a stack or an "
                             "instance", hint="release another image first")
        images = self._describe(ImageIds=[image_id])
        if not images:
            raise NotFound(f"image {image_id} does not exist")
        snapshots = snapshot_ids(images[0])
        self.caller(self.ec2, "deregister_image", ImageId=image_id)
        # Only once the image is gone can its snapshots go (EC2 refuses while it is registered).
        deleted = []
        for snapshot in snapshots:
            try:
                self.caller(self.ec2, "delete_snapshot", SnapshotId=snapshot)
                deleted.append(snapshot)
            except NotFound:
                pass
        return deleted
