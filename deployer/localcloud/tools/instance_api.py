"""The instance side of the supervisor's API: what the tools on an instance's PATH call.

The instance's own credential (``DEPLOYER_INSTANCE_TOKEN``, set by the launcher) goes with
every request.

``cfn-signal`` and the local ``aws`` answer in their real counterparts' words and exit
codes; the request itself, and what can go wrong with it, is the same for both.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request


class Unset(Exception):
    """Not on a local cloud instance: the supervisor's URL is not in the environment."""


class Refused(Exception):
    """The supervisor answered with an error; the message is its own."""


class Unreachable(Exception):
    """The supervisor could not be reached."""


def call(path: str, body: dict | None = None, timeout: float = 10) -> dict:
    """GET ``path`` (POST ``body`` as JSON when given) on the supervisor of this instance."""
    endpoint = os.environ.get("DEPLOYER_CONTROL_URL")
    if not endpoint:
        raise Unset("not on a local cloud instance (DEPLOYER_CONTROL_URL unset)")
    data = None if body is None else json.dumps(body).encode()
    # The instance's own credential: it allows this instance's signal and its stack's
    # target health, nothing else.
    token = os.environ.get("DEPLOYER_INSTANCE_TOKEN", "")
    request = urllib.request.Request(endpoint + path, data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error", {}).get("message")
        except ValueError:
            message = None
        raise Refused(message or str(exc.reason)) from None
    except OSError as exc:
        raise Unreachable(str(exc)) from None
