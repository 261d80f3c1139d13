"""Image lifecycle on any target: list the Etherpad images, prune all but the newest few.

An image in use (by a stack's launch template or ``AMI`` parameter, or by an instance) is
never deregistered, however old: a stack update that rolls back needs the image it rolls
back to.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from deployer.base.errors import DeployerError, StateError, UsageError
from deployer.cloud.port import CloudPort, Image


class PrunePlan(BaseModel):
    keep: list[Image] = Field(default_factory=list)  # the newest, kept by --keep
    in_use: list[Image] = Field(default_factory=list)  # older, but a stack or instance uses it
    deregister: list[Image] = Field(default_factory=list)


class PruneResult(BaseModel):
    plan: PrunePlan
    deregistered: list[str] = Field(default_factory=list)
    deleted_snapshots: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)  # image id -> why the cloud said no


def plan_prune(images: list[Image], in_use: set[str], keep: int) -> PrunePlan:
    if keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {keep}")
    newest_first = sorted(images, key=lambda i: (i.created_at, i.image_id), reverse=True)
    plan = PrunePlan(keep=newest_first[:keep])
    for image in newest_first[keep:]:
        (plan.in_use if image.image_id in in_use else plan.deregister).append(image)
    return plan


def prune_images(cloud: CloudPort, keep: int, *, dry_run: bool = False) -> PruneResult:
    plan = plan_prune(cloud.list_images(), cloud.images_in_use(), keep)
    result = PruneResult(plan=plan)
    if dry_run:
        return result
    for image in plan.deregister:
        try:
            result.deleted_snapshots += cloud.deregister_image(image.image_id)
            result.deregistered.append(image.image_id)
        except StateError as exc:  # came into use since we looked
            result.refused[image.image_id] = str(exc)
        except DeployerError as exc:
            result.refused[image.image_id] = str(exc)
    return result


def age_text(created_at: float, now: float | None = None) -> str:
    seconds = max(0.0, (now or time.time()) - created_at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def size_text(size_bytes: int) -> str:
    if size_bytes >= 2**30:
        return f"{size_bytes / 2**30:.0f} GiB"
    return f"{size_bytes / 1e6:.0f} MB"
