"""Stacks that would run more than one Etherpad serving the same pads at once.

Etherpad does not cluster: each instance keeps the pads it has loaded in memory, so two
instances serving one pad diverge and overwrite each other's revisions in the shared
database. The release plugin's pad lease (one pad server per environment, the others forward)
makes several instances safe; it needs PostgreSQL and is switched off by
``ETHERPAD_PAD_LEASE=off``. A group can run two instances at once when its desired or maximum
capacity is above one, or when a rolling update launches a new instance beside an old one.
"""

from __future__ import annotations

import re

from deployer.cfn.specs import AutoScalingGroupSpec, LaunchTemplateSpec

_LEASE_OFF = re.compile(r"ETHERPAD_PAD_LEASE=['\"]?(off|0|false|no)\b", re.IGNORECASE)
_DB_TYPE = re.compile(r"DB_TYPE=['\"]?([A-Za-z]+)")


def most_at_once(group: AutoScalingGroupSpec) -> int:
    """How many instances of ``group`` can serve at once."""
    at_once = max(group.desired_capacity, group.max_size)
    update = group.rolling_update
    if update is not None:
        # A batch is launched before the old instances it replaces leave service.
        at_once = max(at_once, update.min_instances_in_service + update.max_batch_size)
    return at_once


def lease_missing(template: LaunchTemplateSpec | None) -> str | None:
    """Why instances of ``template`` would serve pads without the lease, or None."""
    user_data = (template.user_data if template else None) or ""
    if _LEASE_OFF.search(user_data):
        return "its user data sets ETHERPAD_PAD_LEASE=off"
    db_types = {m.lower() for m in _DB_TYPE.findall(user_data)}
    if db_types and db_types != {"postgres"}:
        return f"its database is {', '.join(sorted(db_types))} (the pad lease needs postgres)"
    return None


def findings(groups: dict[str, AutoScalingGroupSpec],
             templates: dict[str, LaunchTemplateSpec]) -> list[tuple[str, str]]:
    """(logical id, message) for every group that could run two pad servers at once."""
    out = []
    for logical_id, group in groups.items():
        at_once = most_at_once(group)
        if at_once < 2:
            continue
        why = lease_missing(templates.get(group.launch_template.logical_id))
        if why:
            out.append((logical_id, f"up to {at_once} Etherpad instances can serve the same pads "
                        f"at once, and {why}: pads diverge and acknowledged edits are lost "
                        "(keep the pad lease on, or run one instance)"))
    return out
