"""A real browser on a pad: headless Chromium loads the pad page, runs Etherpad's client
(socket.io handshake, CLIENT_READY, CLIENT_VARS) and the test reads the DOM it reached."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome",
                                                  "google-chrome-stable") if shutil.which(name)),
                None)
# pad.js adds it once CLIENT_VARS arrived and the editor is built; until then the page
# shows "Loading..." (#editorloadingbox).
READY = re.compile(r'id="editorcontainer"[^>]*class="[^"]*\binitialized\b')


def pad_dom(url: str, *, budget_ms: int = 20000, timeout_s: float = 150) -> str:
    """The pad page's DOM after Chromium gave it ``budget_ms`` of virtual time."""
    assert CHROMIUM is not None, "chromium is not installed (./run setup adds it)"
    with tempfile.TemporaryDirectory(prefix="deployer-chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={Path(profile)}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=timeout_s, check=False)
    return done.stdout


def reaches_ready_editor(url: str) -> bool:
    return bool(READY.search(pad_dom(url)))
