"""Small helpers the slow suites share: Etherpad's HTTP API and the processes of a cloud."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path


def etherpad_api(url: str, home: Path, method: str, **params: str) -> dict:
    """Call Etherpad's HTTP API through ``url`` with the API key of the cloud at ``home``."""
    key = next(home.glob("instances/*/root/opt/etherpad/APIKEY.txt")).read_text().strip()
    query = urllib.parse.urlencode({"apikey": key, **params})
    with urllib.request.urlopen(f"{url}api/1.2.15/{method}?{query}", timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["code"] == 0, answer
    return answer["data"] or {}


def processes_with(needle: bytes, home: Path | None = None) -> list[int]:
    """Live processes whose environment holds ``needle`` (and ``home``, when given)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X"):
            continue
        if needle in env and (home is None or str(home).encode() in env):
            pids.append(int(entry))
    return pids
