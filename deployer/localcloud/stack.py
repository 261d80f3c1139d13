"""A stack of the local cloud: the resources one CloudFormation template describes, running.

The template is read by :mod:`deployer.cfn.templates` (the very file that ships to
AWS); this module turns its typed specs into running parts — the database server, the load
balancer and target group, the Auto Scaling group and its instances, the CodeDeploy
application and deployment group — and moves the stack through CloudFormation's states.
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from deployer.base import logs
from deployer.base.errors import CloudError, ConfigError, DeployerError, UnsupportedProperty
from deployer.cfn.specs import (
    DatabaseEngine,
    GenerateSecretSpec,
    SecretReference,
    TargetGroupSpec,
)
from deployer.cfn.templates import StackModel, load_stack
from deployer.localcloud.compute.autoscaling import (
    AutoScalingGroup,
    CreationPolicy,
    GroupSettings,
    HealthCheckType,
    LaunchTemplate,
    RollingUpdatePolicy,
    UpdateFailed,
)
from deployer.localcloud.compute.instances import (
    PUBLIC_SSM_PARAMETERS,
    free_port,
    is_instance_alive,
    kill_instance_processes,
)
from deployer.localcloud.context import CloudContext
from deployer.localcloud.database import DatabaseEndpoint, PostgresServer
from deployer.localcloud.elb.loadbalancer import LoadBalancer, TargetGroupSettings
from deployer.localcloud.elb.targetgroup import TargetHealthState
from deployer.localcloud.state import (
    InstanceRecord,
    InstanceState,
    StackRecord,
    StackStatus,
)

log = logs.get_logger(component="stack")
REGION = "us-east-1"
STACK_TYPE = "AWS::CloudFormation::Stack"


def generate_password(spec: GenerateSecretSpec | None) -> str:
    """GenerateSecretString, locally: the length and character classes the template asks."""
    spec = spec or GenerateSecretSpec()
    classes = [("" if spec.exclude_lowercase else string.ascii_lowercase),
               ("" if spec.exclude_uppercase else string.ascii_uppercase),
               ("" if spec.exclude_numbers else string.digits),
               ("" if spec.exclude_punctuation else "!#$%&()*+,-.:;<=>?[]^_{|}~"),
               (" " if spec.include_space else "")]
    excluded = set(spec.exclude_characters)
    alphabet = "".join(c for c in "".join(classes) if c not in excluded) or string.ascii_letters
    return "".join(secrets.choice(alphabet) for _ in range(spec.password_length))


class LoadBalancerTraffic:
    """The Auto Scaling group's view of its target group."""

    def __init__(self, lb: LoadBalancer) -> None:
        self.lb = lb

    def register(self, instance_id: str, port: int) -> None:
        self.lb.register(instance_id, port)

    def deregister(self, instance_id: str) -> None:
        self.lb.deregister(instance_id)

    def wait_drained(self, instance_id: str, timeout: float) -> bool:
        return self.lb.wait_drained(instance_id, timeout)

    def state_of(self, instance_id: str) -> TargetHealthState | None:
        state = self.lb.states().get(instance_id)
        return state.state if state else None


class CodeDeployHooks(Protocol):
    """What a stack asks of CodeDeploy: register its deployment groups, and give an instance
    the group launches the last good revision before it goes in service."""

    def register(self, runtime: StackRuntime, model: StackModel) -> None: ...
    def before_in_service(self, runtime: StackRuntime, record: InstanceRecord) -> None: ...


class StackRuntime:
    """The running parts of one stack, on the cloud's shared parts (``ctx``)."""

    def __init__(self, ctx: CloudContext, record: StackRecord, *,
                 codedeploy: CodeDeployHooks | None = None) -> None:
        self.ctx = ctx
        self.clock = ctx.clock
        self.codedeploy = codedeploy
        self.record = record
        self.store = ctx.store
        self.model: StackModel | None = None
        self.lb: LoadBalancer | None = None
        self.db: PostgresServer | None = None
        self.db_endpoint: DatabaseEndpoint | None = None
        self.groups: dict[str, AutoScalingGroup] = {}

    # -- template ---------------------------------------------------------------------------
    def _attribute(self, logical_id: str, attribute: str) -> str | None:
        # Ports are allocated on first use and kept: GetAtt must resolve before the parts run.
        rec = self.record
        if attribute == "DNSName":
            if not rec.load_balancer_port:
                rec.load_balancer_port = free_port()
            return f"127.0.0.1:{rec.load_balancer_port}"
        if attribute in ("Endpoint.Address", "Endpoint.Port"):
            rec.database.setdefault("host", "127.0.0.1")
            rec.database.setdefault("port", free_port())
            return str(rec.database["host" if attribute == "Endpoint.Address" else "port"])
        return None

    def resolve(self, parameters: dict[str, str]) -> StackModel:
        return load_stack(Path(self.record.template), parameters, stack_name=self.record.name,
                          region=REGION, attribute_resolver=self._attribute,
                          ssm_resolver=self._ssm)

    def _ssm(self, name: str) -> str | None:
        return self.store.state.ssm.get(name) or PUBLIC_SSM_PARAMETERS.get(name)

    def event(self, resource: str, rtype: str, status: str, reason: str = "") -> None:
        self.store.add_event(self.record, resource, rtype, status, reason)

    def set_status(self, status: StackStatus, reason: str = "") -> None:
        with self.store.lock:
            self.record.status = status
            self.record.status_reason = reason
            self.record.updated_at = self.clock.now()
        self.event(self.record.name, STACK_TYPE, status.value, reason)

    # -- the parts --------------------------------------------------------------------------
    def _secret(self, model: StackModel, ref: SecretReference) -> str:
        """A Secrets Manager secret of this stack: generated once, kept, never shown."""
        with self.store.lock:
            if ref.secret not in self.record.secrets:
                spec = model.secrets.get(ref.secret)
                if spec is None:
                    raise ConfigError(f"secret {ref.secret} is not defined in this stack",
                                      location=self.record.template)
                if spec.secret_string is not None:
                    text = spec.secret_string.get_secret_value()
                else:
                    gen = spec.generate
                    document = json.loads(gen.secret_string_template or "{}") if gen else {}
                    password = generate_password(gen)
                    text = json.dumps({**document, gen.generate_string_key: password}) \
                        if gen and gen.generate_string_key else password
                self.record.secrets[ref.secret] = text
                self.store.save()
            text = self.record.secrets[ref.secret]
        if not ref.json_key:
            return text
        try:
            return str(json.loads(text)[ref.json_key])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"secret {ref.secret} has no key {ref.json_key!r}",
                              location=self.record.template) from exc

    def _value(self, model: StackModel, value) -> str:
        if isinstance(value, SecretReference):
            return self._secret(model, value)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return str(value)

    def _start_database(self, model: StackModel) -> None:
        for logical_id, spec in model.databases.items():
            rec = self.record
            if spec.engine is not DatabaseEngine.POSTGRES:
                raise UnsupportedProperty(logical_id, "Engine", location=rec.template,
                                          why=f"{spec.engine.value}: the local cloud runs "
                                              "PostgreSQL")
            if "password" not in rec.database:
                password = (self._value(model, spec.master_password)
                            if spec.master_password is not None else secrets.token_urlsafe(18))
                rec.database.setdefault("host", "127.0.0.1")
                rec.database.setdefault("port", free_port())
                rec.database.update(name=spec.db_name or "postgres",
                                    user=self._value(model, spec.master_username),
                                    password=password)
                self.store.save()
            self.event(logical_id, "AWS::RDS::DBInstance", "CREATE_IN_PROGRESS")
            self.db = PostgresServer(self.ctx.home, rec.name, int(rec.database["port"]))
            self.db.start()
            self.db_endpoint = self.db.ensure_database(str(rec.database["name"]),
                                                       str(rec.database["user"]),
                                                       str(rec.database["password"]))
            self.event(logical_id, "AWS::RDS::DBInstance", "CREATE_COMPLETE")
            return  # the book's stacks have one database

    def _start_load_balancer(self, model: StackModel) -> None:
        if not model.target_groups:
            return
        logical_id, tg = next(iter(model.target_groups.items()))
        settings = target_group_settings(tg)
        if not self.record.load_balancer_port:
            self.record.load_balancer_port = free_port()
            self.store.save()
        # The listener's idle timeout (idle_timeout.timeout_seconds, 60 s by default) bounds
        # a silent target's answer and how long idle target connections are kept.
        idle_s = next((lb.idle_timeout_s for lb in model.load_balancers.values()), 60)
        self.lb = LoadBalancer(self.record.name, settings, port=self.record.load_balancer_port,
                               idle_timeout_s=idle_s, clock=self.clock)
        self.lb.start()
        self.event(logical_id, "AWS::ElasticLoadBalancingV2::TargetGroup", "CREATE_COMPLETE",
                   f"listening on {self.lb.url}")

    def instance_env(self, record: InstanceRecord) -> dict[str, str]:
        # No AWS_REGION nor AWS_DEFAULT_REGION: EC2 sets neither, user data must say it.
        env = {"STACK_NAME": self.record.name}
        if self.lb:
            env["LOAD_BALANCER_URL"] = self.lb.url
        # One API key and session key per stack, as an SSM SecureString would give every
        # instance: pads and sessions carry over a rolling update.
        with self.store.lock:
            for key in ("ETHERPAD_APIKEY", "ETHERPAD_SESSIONKEY"):
                self.record.secrets.setdefault(key, secrets.token_hex(32))
            env["ETHERPAD_APIKEY"] = self.record.secrets["ETHERPAD_APIKEY"]
            env["ETHERPAD_SESSIONKEY"] = self.record.secrets["ETHERPAD_SESSIONKEY"]
        if self.db_endpoint:
            e = self.db_endpoint
            env.update(DB_TYPE="postgres", DB_HOST=e.host, DB_PORT=str(e.port), DB_NAME=e.name,
                       DB_USER=e.user, DB_PASSWORD=e.password)
        return self.ctx.launcher.instance_env(record, env)

    def _group(self, model: StackModel, logical_id: str) -> AutoScalingGroup:
        spec = model.auto_scaling_groups[logical_id]
        settings = GroupSettings(
            min_size=spec.min_size, max_size=spec.max_size,
            desired_capacity=spec.desired_capacity if spec.desired_capacity is not None
            else spec.min_size,
            health_check_type=HealthCheckType(spec.health_check_type.value),
            health_check_grace_period_s=spec.health_check_grace_period_s,
        )
        group = self.groups.get(logical_id)
        if group is None:
            group = AutoScalingGroup(
                stack=self.record, logical_id=logical_id, settings=settings, store=self.store,
                launcher=self.ctx.launcher, images=self.ctx.images,
                traffic=LoadBalancerTraffic(self.lb) if self.lb else None,
                instance_env=self.instance_env,
                before_in_service=self._before_in_service if self.codedeploy else None,
                clock=self.clock,
            )
            self.groups[logical_id] = group
        group.settings = settings
        return group

    def _before_in_service(self, record: InstanceRecord) -> None:
        if self.codedeploy is not None:
            self.codedeploy.before_in_service(self, record)

    def launch_template_of(self, model: StackModel, logical_id: str) -> LaunchTemplate:
        spec = model.auto_scaling_groups[logical_id]
        lt = model.launch_templates[spec.launch_template.logical_id]
        return LaunchTemplate(image_id=lt.image_id or None, user_data=lt.user_data)

    def release_of(self, parameters: dict[str, str]) -> str | None:
        return parameters.get("EtherpadVersion")

    # -- create / update / delete ----------------------------------------------------------
    def create(self) -> None:
        self.set_status(StackStatus.CREATE_IN_PROGRESS, "User Initiated")
        try:
            self._start_database_and_lb()
            model = self.resolve(self.record.parameters)
            self.model = model
            self.record.noecho = sorted(model.noecho_parameters)
            for bucket in model.buckets:
                (self.ctx.artifacts.dir / self._bucket_name(bucket)).mkdir(parents=True,
                                                                           exist_ok=True)
            for parameter in model.ssm_parameters.values():
                self.store.state.ssm[parameter.name] = parameter.value
            if self.codedeploy and (model.deployment_groups or model.codedeploy_applications):
                self.codedeploy.register(self, model)
            for logical_id, spec in model.auto_scaling_groups.items():
                group = self._group(model, logical_id)
                self.event(logical_id, "AWS::AutoScaling::AutoScalingGroup", "CREATE_IN_PROGRESS")
                cp = spec.creation_policy
                policy = CreationPolicy(count=cp.signal_count, timeout_s=cp.signal_timeout_s,
                                        min_successful_instances_percent=(
                                            cp.min_successful_instances_percent)) if cp else None
                group.create(self.launch_template_of(model, logical_id),
                             self.release_of(self.record.parameters), policy)
                self.event(logical_id, "AWS::AutoScaling::AutoScalingGroup", "CREATE_COMPLETE")
            self.record.outputs = {k: str(v) for k, v in model.outputs.items()}
            self.record.launch_template_version = self._lt_versions(model)
            self.set_status(StackStatus.CREATE_COMPLETE)
        except DeployerError as exc:
            self.event(self.record.name, STACK_TYPE, "CREATE_FAILED", str(exc))
            self.set_status(StackStatus.ROLLBACK_IN_PROGRESS, str(exc))
            try:
                self.teardown()
            except (DeployerError, OSError) as rb_exc:
                # As on AWS: a create whose rollback failed can only be deleted.
                self.set_status(StackStatus.ROLLBACK_FAILED, str(rb_exc))
                raise exc from rb_exc
            self.set_status(StackStatus.ROLLBACK_COMPLETE, str(exc))
            raise

    def _start_database_and_lb(self) -> None:
        # Ports and endpoints first: the template's GetAtt on them must resolve.
        model = self.resolve(self.record.parameters)
        self._start_database(model)
        self._start_load_balancer(model)

    def _bucket_name(self, logical_id: str) -> str:
        return f"{self.record.name}-{logical_id}".lower()

    def _lt_versions(self, model: StackModel) -> str:
        return ",".join(self.launch_template_of(model, g).version
                        for g in sorted(model.auto_scaling_groups))

    def plan_update(self, parameters: dict[str, str]) -> tuple[dict[str, str], StackModel]:
        """Check an update before anything changes: bad parameters or no change fail here."""
        merged = {**self.record.parameters, **parameters}
        new_model = self.resolve(merged)
        if self._lt_versions(new_model) == self.record.launch_template_version and \
                merged == self.record.parameters:
            raise ConfigError("No updates are to be performed.",
                              location=f"stack {self.record.name}")
        return merged, new_model

    def update(self, merged: dict[str, str], new_model: StackModel) -> None:
        previous = dict(self.record.parameters)
        with self.store.lock:
            self.record.previous_parameters = previous
            self.record.parameters = merged
        self.set_status(StackStatus.UPDATE_IN_PROGRESS, "User Initiated")
        try:
            self._apply(new_model, merged)
            self.set_status(StackStatus.UPDATE_COMPLETE)
        except DeployerError as exc:
            self.event(self.record.name, STACK_TYPE, "UPDATE_FAILED", str(exc))
            self.set_status(StackStatus.UPDATE_ROLLBACK_IN_PROGRESS, str(exc))
            with self.store.lock:
                self.record.parameters = previous
            try:
                self._apply(self.resolve(previous), previous)
            except DeployerError as rb_exc:
                self.set_status(StackStatus.UPDATE_ROLLBACK_FAILED, str(rb_exc))
                raise CloudError(
                    f"update failed ({exc}) and so did its rollback ({rb_exc})") from rb_exc
            self.set_status(StackStatus.UPDATE_ROLLBACK_COMPLETE, str(exc))

    def _apply(self, model: StackModel, parameters: dict[str, str]) -> None:
        self.model = model
        for logical_id, spec in model.auto_scaling_groups.items():
            group = self._group(model, logical_id)
            template = self.launch_template_of(model, logical_id)
            rolling = spec.rolling_update
            if rolling is None:
                # Without an UpdatePolicy, CloudFormation only changes the launch template;
                # running instances keep the old one until replaced.
                group.launch_template = template
                continue
            policy = RollingUpdatePolicy(
                max_batch_size=rolling.max_batch_size,
                min_instances_in_service=rolling.min_instances_in_service,
                min_successful_instances_percent=rolling.min_successful_instances_percent,
                pause_time_s=rolling.pause_time_s,
                wait_on_resource_signals=rolling.wait_on_resource_signals,
                suspend_processes=tuple(rolling.suspend_processes),
            )
            self.event(logical_id, "AWS::AutoScaling::AutoScalingGroup", "UPDATE_IN_PROGRESS",
                       f"Rolling update: MaxBatchSize {policy.max_batch_size}, "
                       f"MinInstancesInService {policy.min_instances_in_service}, "
                       f"PauseTime {policy.pause_time_s:g}s")
            try:
                group.rolling_update(template, self.release_of(parameters), policy)
            except UpdateFailed as exc:
                self.event(logical_id, "AWS::AutoScaling::AutoScalingGroup", "UPDATE_FAILED",
                           str(exc))
                raise
            self.event(logical_id, "AWS::AutoScaling::AutoScalingGroup", "UPDATE_COMPLETE")
        self.record.outputs = {k: str(v) for k, v in model.outputs.items()}
        self.record.launch_template_version = self._lt_versions(model)
        self.store.save()

    def teardown(self) -> None:
        """Delete every resource: instances, load balancer, database, buckets."""
        for record in list(self.store.state.live_instances(self.record.name)):
            self.ctx.launcher.terminate(record, grace_s=5.0)
            self.ctx.launcher.delete_root(record)
        if self.lb:
            self.lb.stop()
            self.lb = None
        if self.db is None and self.record.database:
            self.db = PostgresServer(self.ctx.home, self.record.name,
                                     int(self.record.database["port"]))
        if self.db:
            self.db.destroy()
            self.db = None
        if self.model:
            for bucket in self.model.buckets:
                self.ctx.artifacts.delete_bucket(self._bucket_name(bucket))

    def delete(self) -> None:
        self.set_status(StackStatus.DELETE_IN_PROGRESS, "User Initiated")
        if self.model is None:
            try:
                self.model = self.resolve(self.record.parameters)
            except DeployerError:
                self.model = None
        try:
            self.teardown()
        except (DeployerError, OSError) as exc:
            # As on AWS: the stack stays, DELETE_FAILED, until a delete succeeds.
            self.set_status(StackStatus.DELETE_FAILED, str(exc))
            raise
        self.set_status(StackStatus.DELETE_COMPLETE)

    # -- recovery after a supervisor restart ------------------------------------------------
    def recover(self) -> None:
        """Bring the stack's parts back after the supervisor itself was killed."""
        self._start_database_and_lb()
        model = self.resolve(self.record.parameters)
        self.model = model
        for logical_id in model.auto_scaling_groups:
            group = self._group(model, logical_id)
            group.launch_template = self.launch_template_of(model, logical_id)
        for record in self.store.state.live_instances(self.record.name):
            if is_instance_alive(record) and record.state is InstanceState.RUNNING:
                log.info("instance.adopted", instance_id=record.instance_id)
                if self.lb:
                    self.lb.register(record.instance_id, record.port)
            else:
                kill_instance_processes(record.instance_id, record.pid, grace_s=2.0)
                record.state = InstanceState.TERMINATED
                record.terminated_at = self.clock.now()
                self.event(record.group, "AWS::AutoScaling::AutoScalingGroup", "TERMINATED",
                           f"{record.instance_id} was lost while the supervisor was down")
        self.store.save()
        interrupted = self.record.status
        if interrupted.in_progress:
            # The activity that was running died with the supervisor: as CloudFormation does
            # for a failed update, go back to the last known good parameters.
            self.event(self.record.name, STACK_TYPE, interrupted.value,
                       "interrupted: the local cloud supervisor was killed")
            if interrupted in (StackStatus.UPDATE_IN_PROGRESS,
                               StackStatus.UPDATE_ROLLBACK_IN_PROGRESS):
                good = self.record.previous_parameters or self.record.parameters
                self.set_status(StackStatus.UPDATE_ROLLBACK_IN_PROGRESS,
                                "resuming after a supervisor restart")
                self.record.parameters = good
                self._apply(self.resolve(good), good)
                self.set_status(StackStatus.UPDATE_ROLLBACK_COMPLETE)
            elif interrupted is StackStatus.CREATE_IN_PROGRESS:
                self.teardown()
                self.set_status(StackStatus.ROLLBACK_COMPLETE, "creation interrupted")
            elif interrupted is StackStatus.DELETE_IN_PROGRESS:
                self.delete()
        self.ensure_capacity()

    def ensure_capacity(self) -> None:
        """Launch instances until each group is at its desired capacity again."""
        if self.model is None or self.record.status not in (
                StackStatus.CREATE_COMPLETE, StackStatus.UPDATE_COMPLETE,
                StackStatus.UPDATE_ROLLBACK_COMPLETE):
            return
        for group in self.groups.values():
            if not group.busy.acquire(blocking=False):
                continue
            try:
                missing = group.settings.desired_capacity - len(group.instances())
                for _ in range(max(0, missing)):
                    if group.launch_template:
                        group.launch(group.launch_template,
                                     self.release_of(self.record.parameters))
            finally:
                group.busy.release()


def target_group_settings(spec: TargetGroupSpec) -> TargetGroupSettings:
    """The load balancer's settings from the template's target group.

    Every field the two share is carried by name, so a property the reader honours cannot be
    dropped on the way (HealthCheckPort once was).
    """
    shared = set(TargetGroupSettings.model_fields) & set(TargetGroupSpec.model_fields)
    return TargetGroupSettings(**spec.model_dump(include=shared))
