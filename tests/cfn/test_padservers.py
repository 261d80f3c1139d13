"""Which stacks could run two Etherpads serving the same pads at once."""

from __future__ import annotations

from pathlib import Path

from deployer.cfn import padservers
from deployer.cfn.specs import (
    AutoScalingGroupSpec,
    LaunchTemplateRef,
    LaunchTemplateSpec,
    RollingUpdatePolicy,
)
from deployer.core.validate import validate_assets

ROOT = Path(__file__).resolve().parents[2]


def group(desired=1, max_size=1, update=None) -> AutoScalingGroupSpec:
    return AutoScalingGroupSpec(logical_id="Group", name="g", min_size=1, max_size=max_size,
                                desired_capacity=desired, rolling_update=update,
                                launch_template=LaunchTemplateRef(logical_id="LT", version="1"))


def template(user_data: str) -> dict[str, LaunchTemplateSpec]:
    return {"LT": LaunchTemplateSpec(logical_id="LT", name="lt", user_data=user_data)}


def test_one_instance_without_overlap_is_fine_even_without_the_lease():
    assert padservers.findings({"Group": group()}, template("export ETHERPAD_PAD_LEASE=off")) == []


def test_two_instances_without_the_lease_are_reported():
    [(where, message)] = padservers.findings({"Group": group(desired=2, max_size=3)},
                                             template("export ETHERPAD_PAD_LEASE=off\n"))
    assert where == "Group"
    assert "up to 3 Etherpad instances" in message and "ETHERPAD_PAD_LEASE=off" in message


def test_a_rolling_update_overlap_counts():
    update = RollingUpdatePolicy(max_batch_size=1, min_instances_in_service=1)
    [(_, message)] = padservers.findings({"Group": group(max_size=1, update=update)},
                                         template("export DB_TYPE=mysql"))
    assert "up to 2" in message and "needs postgres" in message


def test_the_lease_on_postgres_makes_several_instances_fine():
    assert padservers.findings({"Group": group(desired=2, max_size=3)},
                               template("export DB_TYPE=postgres")) == []


def test_the_shipped_stacks_keep_the_lease():
    result = validate_assets(ROOT, ["templates"], which=lambda _name: None)
    assert [f for f in result.findings if f.check == "pad servers"] == []
