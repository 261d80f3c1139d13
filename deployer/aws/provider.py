"""``AwsCloud``: the cloud port on a real AWS account (boto3 and the packer binary).

One CloudFormation stack per strategy, ``etherpad-<strategy>``, created and updated through
change sets; CodeDeploy deployments into the stack's deployment group; images baked by the
real ``packer``. Everything that waits follows AWS live (about one look a second) and shows
what happens through ``on_event``. The session and the clock are injected: tests pass moto
sessions or Stubber-backed clients and a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from deployer.aws import templates
from deployer.aws.codedeploy import Deployments
from deployer.aws.errors import Caller
from deployer.aws.images import Images
from deployer.aws.packer import PackerCli
from deployer.aws.session import Identity, client, default_session, preflight
from deployer.aws.stacks import (
    ChangeSets,
    ScalingActivityFollower,
    StackEventFollower,
    StackStatus,
    TargetHealthWatcher,
    follow_operation,
    status_of,
)
from deployer.aws.storage import Storage
from deployer.base import logs
from deployer.base.assets import asset_path
from deployer.base.clock import Clock
from deployer.base.errors import CloudError, ConfigError, DeployerError, NotFound, StateError
from deployer.cloud.port import (
    NO_CHANGES,
    Artifact,
    CloudPort,
    DeploymentResult,
    EnvironmentView,
    Event,
    Image,
    InstanceView,
    OnEvent,
    StackResult,
    TargetHealth,
    raise_if_not_all_removed,
)

STRATEGIES = ("codedeploy", "cloudformation", "packer")
# Creating a stack with a database and instances that install Etherpad takes tens of
# minutes; CloudFormation enforces its own timeouts (CreationPolicy, PauseTime) long before.
STACK_TIMEOUT_S = 3 * 3600.0
FAILED = {StackStatus.CREATE_FAILED, StackStatus.ROLLBACK_COMPLETE, StackStatus.ROLLBACK_FAILED,
          StackStatus.UPDATE_ROLLBACK_COMPLETE, StackStatus.UPDATE_ROLLBACK_FAILED,
          StackStatus.UPDATE_FAILED, StackStatus.DELETE_FAILED}
BUNDLE_TYPES = {".tgz": "tgz", ".tar.gz": "tgz", ".tar": "tar", ".zip": "zip"}
RESOURCE_LOOKUP_EVERY = 3  # polls between looks for the group and target group of a new stack


def stack_name(strategy: str) -> str:
    return f"etherpad-{strategy}"


def bundle_type(key: str) -> str:
    for suffix, kind in BUNDLE_TYPES.items():
        if key.endswith(suffix):
            return kind
    raise ConfigError(f"revision {key} is not a .tgz, .tar or .zip bundle")


class AwsCloud(CloudPort):
    name = "aws"
    fetches_releases_on_this_machine = False  # EC2 instances and Packer builders fetch them

    def __init__(self, session: boto3.Session | None = None, *, clock: Clock | None = None,
                 packer: PackerCli | None = None, caller: Caller | None = None,
                 assets_dir: Path | None = None, clients: dict[str, Any] | None = None,
                 identity: Identity | None = None) -> None:
        """``clients`` (by service name) and ``identity`` let tests hand in Stubber-backed
        clients and skip the preflight; in use both come from the session."""
        self._session = session
        self.clock = clock or Clock()
        self.caller = caller or Caller(sleep=self.clock.sleep)
        self.packer = packer or PackerCli(clock=self.clock.now)
        self.assets_dir = assets_dir
        self.identity: Identity | None = identity
        self._clients: dict[str, Any] = dict(clients or {})
        self._health: dict[str, TargetHealthWatcher] = {}
        self.log = logs.get_logger(target="aws")

    # -- session, clients, preflight --------------------------------------------------------
    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = default_session()
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(self.session, service)
        return self._clients[service]

    def preflight(self) -> Identity:
        """Who we are, before anything is created; one line if credentials or region are wrong."""
        self.identity = preflight(self.session, self.caller)
        self.log.info("aws.identity", account=self.identity.account, arn=self.identity.arn,
                      region=self.identity.region)
        return self.identity

    def _identity(self) -> Identity:
        return self.identity or self.preflight()

    def _storage(self) -> Storage:
        identity = self._identity()
        return Storage(self.caller, self.client("s3"), identity.account, identity.region)

    def _assets_url(self) -> str:
        return self._storage().upload_assets(self.assets_dir or asset_path("etherpad"))

    # -- stacks -----------------------------------------------------------------------------
    def _stack(self, name_or_id: str) -> dict | None:
        try:
            stacks = self.caller(self.client("cloudformation"), "describe_stacks",
                                 StackName=name_or_id).get("Stacks", [])
        except NotFound:
            return None
        return stacks[0] if stacks else None

    def _resources(self, name_or_id: str) -> list[dict]:
        try:
            return list(self.caller.pages(self.client("cloudformation"), "list_stack_resources",
                                          "StackResourceSummaries", StackName=name_or_id))
        except NotFound:
            return []

    def _physical(self, name_or_id: str, resource_type: str,
                  resources: list[dict] | None = None) -> list[str]:
        return [r["PhysicalResourceId"] for r in (resources if resources is not None
                                                  else self._resources(name_or_id))
                if r.get("ResourceType") == resource_type and r.get("PhysicalResourceId")
                and not r.get("ResourceStatus", "").startswith("DELETE")]

    def _require(self, strategy: str) -> dict:
        stack = self._stack(stack_name(strategy))
        if stack is None:
            raise NotFound(f"there is no {strategy} environment on AWS",
                           hint=f"create it: deployer up --strategy {strategy} --target aws "
                                "--version VERSION")
        status = status_of(stack["StackStatus"])
        if status.in_progress:
            raise StateError(f"stack {stack['StackName']} is {status.value}",
                             hint="wait for it to finish (see the CloudFormation console)")
        if not status.usable:
            raise StateError(f"stack {stack['StackName']} is {status.value}: not an environment "
                             "to release on",
                             hint=f"'deployer up --strategy {strategy} --target aws --version "
                                  "VERSION' repairs or recreates it")
        return stack

    def _outputs(self, stack: dict) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def _output(self, stack: dict, key: str) -> str:
        value = self._outputs(stack).get(key)
        if not value:
            raise ConfigError(f"stack {stack['StackName']} has no {key} output",
                              hint="the template must declare it for this strategy")
        return value

    def _side_watch(self, strategy: str, stack: str, on_event: OnEvent,
                    since: float) -> Callable[[], None]:
        """Scaling activities and target health beside the stack events, once they exist."""
        state: dict[str, Any] = {"polls": 0, "scaling": None}

        def watch() -> None:
            state["polls"] += 1
            try:
                health = self._health.get(strategy)
                if (state["scaling"] is None or health is None) and \
                        (state["polls"] - 1) % RESOURCE_LOOKUP_EVERY == 0:
                    resources = self._resources(stack)
                    groups = self._physical(stack, "AWS::AutoScaling::AutoScalingGroup",
                                            resources)
                    if groups and state["scaling"] is None:
                        state["scaling"] = ScalingActivityFollower(
                            self.caller, self.client("autoscaling"), groups[0], on_event, since)
                    target_groups = self._physical(
                        stack, "AWS::ElasticLoadBalancingV2::TargetGroup", resources)
                    if target_groups and health is None:
                        self._watch_health(strategy, target_groups[0], on_event)
                if state["scaling"] is not None:
                    state["scaling"].poll()
                if self._health.get(strategy) is not None:
                    self._health[strategy].on_event = on_event
                    self._health[strategy].poll()
            except DeployerError as exc:
                # Only the stack events decide the outcome; a side view may lag or vanish.
                self.log.debug("aws.side_watch_failed", reason=str(exc))

        return watch

    def _watch_health(self, strategy: str, target_group_arn: str,
                      on_event: OnEvent) -> TargetHealthWatcher:
        watcher = self._health.get(strategy)
        if watcher is None or watcher.target_group_arn != target_group_arn:
            watcher = TargetHealthWatcher(self.caller, self.client("elbv2"), target_group_arn,
                                          on_event, self.clock)
            self._health[strategy] = watcher
        return watcher

    def _run_operation(self, strategy: str, stack_id: str, start: Callable[[], object],
                       on_event: OnEvent, what: str) -> StackResult:
        name = stack_name(strategy)
        cfn = self.client("cloudformation")
        follower = StackEventFollower(self.caller, cfn, stack_id, on_event, stack_name=name)
        follower.prime()
        since = self.clock.now()
        start()

        def describe() -> StackStatus:
            stack = self._stack(stack_id)
            return status_of(stack["StackStatus"]) if stack else StackStatus.DELETE_COMPLETE

        status = follow_operation(follower, [self._side_watch(strategy, stack_id, on_event, since)],
                                  self.clock, timeout_s=STACK_TIMEOUT_S,
                                  what=f"{what} of stack {name}", describe=describe)
        reason = follower.failure_reason() if status in FAILED else ""
        if status in FAILED:
            self.log.warning("stack.failed", stack_name=name, status=status.value, reason=reason)
        return StackResult(stack_name=name, status=status.value, reason=reason)

    def ensure_environment(self, strategy: str, template: Path, parameters: dict[str, str],
                           on_event: OnEvent) -> EnvironmentView:
        name = stack_name(strategy)
        stack = self._stack(name)
        if stack is not None:
            status = status_of(stack["StackStatus"])
            if status.in_progress:
                raise StateError(f"stack {name} is {status.value}",
                                 hint="wait for it to finish (see the CloudFormation console)")
            if status is StackStatus.UPDATE_ROLLBACK_FAILED:
                return self._continue_update_rollback(strategy, stack, on_event)
            if status.usable:
                view = self.describe_environment(strategy)
                assert view is not None
                return view
            if status is not StackStatus.DELETE_COMPLETE:
                # Never an environment (a change set never executed, a failed create) or
                # halfway gone (a failed delete): it can only be deleted, then created anew.
                self._delete_to_recreate(strategy, status, on_event)
        text = template.read_text()
        document = templates.parse(text, str(template))
        declared = templates.parameter_names(document)
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise ConfigError(f"template has no parameter {', '.join(unknown)}",
                              location=str(template))
        values = dict(parameters)
        if "AssetsUrl" in declared and not values.get("AssetsUrl"):
            values["AssetsUrl"] = self._assets_url()
        body: dict[str, str] = {"template_body": text}
        if len(text.encode()) > templates.TEMPLATE_BODY_LIMIT:
            body = {"template_url": self._storage().upload_template(name, text)}
        change_sets = ChangeSets(self.caller, self.client("cloudformation"), self.clock)
        change_set = change_sets.create(
            name, "CREATE", [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
            templates.capabilities(document), **body,
            tags=[{"Key": "Application", "Value": "etherpad"},
                  {"Key": "deployer:strategy", "Value": strategy}])
        answer = change_sets.wait(change_set)
        if answer is None:
            raise CloudError(f"CloudFormation found nothing to create in {template}")
        assert change_set is not None
        result = self._run_operation(strategy, answer["StackId"],
                                     lambda: change_sets.execute(change_set), on_event, "creation")
        if result.status != StackStatus.CREATE_COMPLETE:
            raise CloudError(f"stack {name} was not created ({result.status}): {result.reason}",
                             hint=f"fix the cause, then 'deployer down --strategy {strategy} "
                                  "--target aws' removes what is left")
        view = self.describe_environment(strategy)
        assert view is not None
        return view

    def _delete_to_recreate(self, strategy: str, status: StackStatus, on_event: OnEvent) -> None:
        name = stack_name(strategy)
        self.log.warning("stack.replacing", stack_name=name, status=status.value)
        try:
            self.destroy_environment(strategy, on_event)
        except CloudError as exc:
            raise StateError(f"stack {name} is {status.value} (not an environment) and could "
                             f"not be deleted to create it anew: {exc.message}",
                             hint="delete it in the CloudFormation console (retain the "
                                  "resources that block the delete), then run again") from exc

    def _continue_update_rollback(self, strategy: str, stack: dict,
                                  on_event: OnEvent) -> EnvironmentView:
        """UPDATE_ROLLBACK_FAILED: continue the rollback (ContinueUpdateRollback) to
        UPDATE_ROLLBACK_COMPLETE, where the stack is an environment again; else one line."""
        name = stack["StackName"]
        self.log.warning("stack.continuing_rollback", stack_name=name)
        cfn = self.client("cloudformation")
        result = self._run_operation(
            strategy, stack["StackId"],
            lambda: self.caller(cfn, "continue_update_rollback", StackName=stack["StackId"]),
            on_event, "continued rollback")
        if result.status is not StackStatus.UPDATE_ROLLBACK_COMPLETE:
            raise StateError(
                f"stack {name} is UPDATE_ROLLBACK_FAILED and continuing its rollback ended "
                f"{result.status.value}: {result.reason or 'no reason given'}",
                hint=f"fix the resource that cannot roll back (or skip it: aws cloudformation "
                     f"continue-update-rollback --stack-name {name} --resources-to-skip ID), "
                     "then run again")
        view = self.describe_environment(strategy)
        assert view is not None
        return view

    def describe_environment(self, strategy: str) -> EnvironmentView | None:
        stack = self._stack(stack_name(strategy))
        if stack is None or stack["StackStatus"] == StackStatus.DELETE_COMPLETE:
            return None
        parameters = {p["ParameterKey"]: p.get("ParameterValue", "")
                      for p in stack.get("Parameters", [])}
        outputs = self._outputs(stack)
        return EnvironmentView(
            strategy=strategy, stack_name=stack["StackName"], stack_status=stack["StackStatus"],
            url=outputs.get("URL"), parameters=parameters, outputs=outputs,
            instances=self._instances(stack["StackId"]), release=parameters.get("EtherpadVersion"))

    def _instances(self, stack_id: str) -> list[InstanceView]:
        resources = self._resources(stack_id)
        groups = self._physical(stack_id, "AWS::AutoScaling::AutoScalingGroup", resources)
        if not groups:
            return []
        answer = self.caller(self.client("autoscaling"), "describe_auto_scaling_groups",
                             AutoScalingGroupNames=groups[:1])
        members = [i for g in answer.get("AutoScalingGroups", []) for i in g.get("Instances", [])]
        if not members:
            return []
        health: dict[str, str] = {}
        target_groups = self._physical(stack_id, "AWS::ElasticLoadBalancingV2::TargetGroup",
                                       resources)
        if target_groups:
            health = {t.target_id: t.state for t in self._target_health(target_groups[0])}
        details: dict[str, dict] = {}
        for reservation in self.caller.pages(self.client("ec2"), "describe_instances",
                                             "Reservations",
                                             InstanceIds=[m["InstanceId"] for m in members]):
            details.update({i["InstanceId"]: i for i in reservation.get("Instances", [])})
        views = []
        for member in members:
            instance = details.get(member["InstanceId"], {})
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            address = instance.get("PrivateIpAddress")
            views.append(InstanceView(
                instance_id=member["InstanceId"], state=member.get("LifecycleState", ""),
                image_id=instance.get("ImageId"), release=tags.get("Release"),
                target_health=health.get(member["InstanceId"]),
                endpoint=f"{address}:9001" if address else None))
        return views

    def destroy_environment(self, strategy: str, on_event: OnEvent) -> None:
        name = stack_name(strategy)
        stack = self._stack(name)
        if stack is None:
            return
        stack_id = stack["StackId"]
        storage = self._storage()
        for bucket in self._physical(stack_id, "AWS::S3::Bucket"):
            emptied = storage.empty_bucket(bucket)
            self.log.info("stack.bucket_emptied", stack_name=name, bucket=bucket, objects=emptied)
        result = self._run_operation(
            strategy, stack_id,
            lambda: self.caller(self.client("cloudformation"), "delete_stack", StackName=stack_id),
            on_event, "deletion")
        self._health.pop(strategy, None)
        if result.status != StackStatus.DELETE_COMPLETE:
            raise CloudError(f"stack {name} was not deleted ({result.status}): {result.reason}",
                             hint="fix the cause in the console, then run 'deployer down' again")

    def destroy_all(self, on_event: OnEvent) -> None:
        failed: dict[str, Exception] = {}
        removed: list[str] = []
        for strategy in STRATEGIES:
            name = stack_name(strategy)
            try:
                if self._stack(name) is None:
                    continue
                self.destroy_environment(strategy, on_event)
                removed.append(name)
            except DeployerError as exc:
                self.log.error("stack.not_removed", stack_name=name, reason=str(exc))
                failed[name] = exc
        raise_if_not_all_removed(failed, removed)

    def update_stack(self, strategy: str, parameters: dict[str, str],
                     on_event: OnEvent) -> StackResult:
        stack = self._require(strategy)
        name = stack["StackName"]
        existing = [p["ParameterKey"] for p in stack.get("Parameters", [])]
        unknown = sorted(set(parameters) - set(existing))
        if unknown:
            raise ConfigError(f"stack {name} has no parameter {', '.join(unknown)}")
        values = dict(parameters)
        if "AssetsUrl" in existing and not values.get("AssetsUrl"):
            # Same bytes, same key: unchanged assets leave the parameter as it was.
            values["AssetsUrl"] = self._assets_url()
        cfn = self.client("cloudformation")
        original = self.caller(cfn, "get_template", StackName=stack["StackId"],
                               TemplateStage="Original")["TemplateBody"]
        text = original if isinstance(original, str) else json.dumps(original)
        document = templates.parse(text, f"stack {name}")
        change_sets = ChangeSets(self.caller, cfn, self.clock)
        change_set = change_sets.create(
            name, "UPDATE",
            [{"ParameterKey": k, "ParameterValue": values[k]} if k in values
             else {"ParameterKey": k, "UsePreviousValue": True} for k in existing],
            templates.capabilities(document))
        answer = change_sets.wait(change_set)
        if answer is None:
            self.log.info("stack.no_changes", stack_name=name)
            on_event(Event(at=self.clock.now(), source="stack", resource=name,
                           status=stack["StackStatus"], reason="no changes: nothing to do"))
            return StackResult(stack_name=name, status=stack["StackStatus"],
                               reason=NO_CHANGES)
        for change in answer.get("Changes", []):
            rc = change.get("ResourceChange", {})
            self.log.info("stack.change", stack_name=name, action=rc.get("Action"),
                          resource=rc.get("LogicalResourceId"), type=rc.get("ResourceType"),
                          replacement=rc.get("Replacement"))
        assert change_set is not None
        return self._run_operation(strategy, stack["StackId"],
                                   lambda: change_sets.execute(change_set), on_event, "update")

    def wait_for_stack_operation(self, strategy: str, on_event: OnEvent) -> StackResult | None:
        name = stack_name(strategy)
        stack = self._stack(name)
        if stack is None or not status_of(stack["StackStatus"]).in_progress:
            return None
        stack_id = stack["StackId"]
        follower = StackEventFollower(self.caller, self.client("cloudformation"), stack_id,
                                      on_event, stack_name=name)
        follower.prime()  # the operation's earlier events were shown while it was followed

        def describe() -> StackStatus:
            now = self._stack(stack_id)
            return status_of(now["StackStatus"]) if now else StackStatus.DELETE_COMPLETE

        status = follow_operation(
            follower, [self._side_watch(strategy, stack_id, on_event, self.clock.now())],
            self.clock, timeout_s=STACK_TIMEOUT_S, what=f"the operation on stack {name}",
            describe=describe, check_every=1)
        reason = ""
        if status in FAILED:
            final = self._stack(stack_id) or {}
            reason = follower.failure_reason() or final.get("StackStatusReason", "")
        return StackResult(stack_name=name, status=status.value, reason=reason)

    # -- artifacts and CodeDeploy -----------------------------------------------------------
    def put_artifact(self, strategy: str, key: str, path: Path) -> Artifact:
        stack = self._require(strategy)
        artifact = self._storage().put_artifact(self._output(stack, "ArtifactBucketName"), key,
                                                path)
        self.log.info("artifact.uploaded", bucket=artifact.bucket, key=artifact.key,
                      etag=artifact.etag, version=artifact.version, size=artifact.size)
        return artifact

    def start_deployment(self, strategy: str, revision: Artifact, *, release: str | None = None,
                         ignore_application_stop_failures: bool = False) -> str:
        """create_deployment of an uploaded revision; the deployment id."""
        stack = self._require(strategy)
        location: dict[str, Any] = {"bucket": revision.bucket, "key": revision.key,
                                    "bundleType": bundle_type(revision.key),
                                    "eTag": revision.etag}
        if revision.version:
            location["version"] = revision.version
        return Deployments(self.caller, self.client("codedeploy"), self.clock).create(
            self._output(stack, "ApplicationName"), self._output(stack, "DeploymentGroupName"),
            {"revisionType": "S3", "s3Location": location},
            description=f"Etherpad {release or revision.key} by deployer",
            ignore_application_stop_failures=ignore_application_stop_failures)

    def deploy_revision(self, strategy: str, revision: Artifact, on_event: OnEvent, *,
                        release: str | None = None,
                        ignore_application_stop_failures: bool = False) -> DeploymentResult:
        deployment_id = self.start_deployment(
            strategy, revision, release=release,
            ignore_application_stop_failures=ignore_application_stop_failures)
        self.log.info("deployment.created", deployment_id=deployment_id, release=release)
        stack_id = self._require(strategy)["StackId"]
        result = self._follow_deployment(deployment_id, on_event,
                                         self._side_watch(strategy, stack_id, on_event,
                                                          self.clock.now()))
        if result.status == "Succeeded" and release:
            self._record_release(strategy, release, on_event)
        return result

    def _follow_deployment(self, deployment_id: str, on_event: OnEvent,
                           watch: Callable[[], None]) -> DeploymentResult:
        return Deployments(self.caller, self.client("codedeploy"), self.clock).follow(
            deployment_id, on_event, watch=watch)

    def _record_release(self, strategy: str, release: str, on_event: OnEvent) -> None:
        """The stack's EtherpadVersion becomes the release the deployment installed, so
        status, compare and the next run see what runs (a revision carries the release, the
        stack would otherwise keep its creation release). Only the group's Release tag (for
        instances launched later) depends on it: no instance is replaced."""
        stack = self._require(strategy)
        current = {p["ParameterKey"]: p.get("ParameterValue")
                   for p in stack.get("Parameters", [])}
        if "EtherpadVersion" not in current or current["EtherpadVersion"] == release:
            return
        try:
            result = self.update_stack(strategy, {"EtherpadVersion": release}, on_event)
        except DeployerError as exc:
            # The release is out; only its record is behind: say so, do not fail the run.
            self.log.warning("deployment.release_not_recorded", stack_name=stack["StackName"],
                             release=release, reason=str(exc))
            return
        if result.status not in (StackStatus.UPDATE_COMPLETE, StackStatus.CREATE_COMPLETE):
            self.log.warning("deployment.release_not_recorded", stack_name=stack["StackName"],
                             release=release, reason=f"{result.status.value}: {result.reason}")

    # -- images -----------------------------------------------------------------------------
    def _images(self) -> Images:
        return Images(self.caller, self.client("ec2"))

    def build_image(self, template: Path, variables: dict[str, str],
                    on_event: OnEvent) -> Image:
        identity = self._identity()
        # Packer reads the same credential chain; name the profile the preflight checked.
        extra = {"AWS_PROFILE": identity.profile} if identity.profile else {}
        image_id = self.packer.build(template, dict(variables), identity.region, on_event,
                                     extra_env=extra)
        images = self._images()
        images.ensure_tags(image_id, variables.get("etherpad_version"))
        image = images.get(image_id)
        on_event(Event(at=self.clock.now(), source="image", resource=image_id,
                       status="available", reason=image.name))
        return image

    def list_images(self) -> list[Image]:
        return self._images().list()

    def images_in_use(self) -> set[str]:
        used: set[str] = set()
        template_ids: list[str] = []
        for strategy in STRATEGIES:
            stack = self._stack(stack_name(strategy))
            if stack is None:
                continue
            if status_of(stack["StackStatus"]).in_progress:
                # An update in flight may roll back to any image it knew: decide afterwards.
                raise StateError(f"stack {stack['StackName']} is {stack['StackStatus']}",
                                 hint="prune images once it has finished")
            for parameter in stack.get("Parameters", []):
                for value in (parameter.get("ParameterValue"), parameter.get("ResolvedValue")):
                    if value and value.startswith("ami-"):
                        used.add(value)
            template_ids += self._physical(stack["StackId"], "AWS::EC2::LaunchTemplate")
        images = self._images()
        used |= images.used_by_launch_templates(template_ids)
        used |= images.used_by_instances([i.image_id for i in images.list()])
        return used

    def deregister_image(self, image_id: str) -> list[str]:
        return self._images().deregister(image_id, self.images_in_use())

    # -- the load balancer ------------------------------------------------------------------
    def _target_health(self, target_group_arn: str) -> list[TargetHealth]:
        watcher = TargetHealthWatcher(self.caller, self.client("elbv2"), target_group_arn,
                                      lambda _e: None, self.clock)
        return [TargetHealth(target_id=t, state=s, reason=r)
                for t, (s, r) in sorted(watcher.current().items())]

    def target_health(self, strategy: str) -> list[TargetHealth]:
        stack = self._stack(stack_name(strategy))
        if stack is None:
            return []
        groups = self._physical(stack["StackId"], "AWS::ElasticLoadBalancingV2::TargetGroup")
        return self._target_health(groups[0]) if groups else []

    def target_health_history(self, strategy: str) -> list[dict]:
        watcher = self._health.get(strategy)
        return list(watcher.history) if watcher else []
