"""Real Etherpad 1.8.14 (npm) on a real PostgreSQL, the local cloud's load balancer, and the
editors' driver: the parts the slow editor tests put together."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from deployer.localcloud.elb.loadbalancer import LoadBalancer, TargetGroupSettings
from deployer.measure.editors import ensure_driver
from tests.etherpad.conftest import etherpad_workdir, npm_install, postgres, release_cache
from tests.support.etherpad import EtherpadRun

__all__ = ["etherpad_workdir", "npm_install", "postgres", "release_cache"]

API_KEY = "editors-test-api-key-5f1c"
SESSION_KEY = "editors-test-session-key-81d2"


@pytest.fixture(scope="session")
def driver_modules():
    return ensure_driver()


@pytest.fixture
def etherpads(npm_install, postgres, tmp_path):
    """Start Etherpad instances on the shared database, each from a copy of the install
    (its own var/ and pid), all with one API key, as a stack's instances are."""
    started: list[EtherpadRun] = []
    database = f"pads_{len(list(tmp_path.parent.iterdir()))}_{tmp_path.name[-6:]}".lower()
    database = "".join(c if c.isalnum() else "_" for c in database)
    postgres.psql(f'CREATE DATABASE "{database}" OWNER "{postgres.user}"')
    env = {**postgres.etherpad_env(), "DB_NAME": database, "ETHERPAD_APIKEY": API_KEY,
           "ETHERPAD_SESSIONKEY": SESSION_KEY}

    def start(name: str, **extra_env: str) -> EtherpadRun:
        home = tmp_path / name
        subprocess.run(["cp", "-a", str(npm_install.root), str(home)], check=True, timeout=120)
        run = EtherpadRun(home, env={**env, **extra_env})
        run.start()
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()
        shutil.rmtree(run.home, ignore_errors=True)


@pytest.fixture
def load_balancer():
    settings = TargetGroupSettings(allow_fast_checks=True, health_check_interval_s=0.5,
                                   health_check_timeout_s=0.4, healthy_threshold=2,
                                   unhealthy_threshold=2, deregistration_delay_s=1,
                                   matcher="200")
    lb = LoadBalancer("editors", settings).start()
    yield lb
    lb.stop()
