"""The data check: pads seeded before a rollout, read back after it, judged.

Through Etherpad's HTTP API (``/api/1.2.15``, the instances' shared ``APIKEY.txt``): before
the rollout :meth:`DataCheck.seed` creates pads with known text; after it
:meth:`DataCheck.verify` reads every pad through the load balancer and from every live
instance given, and :func:`judge` decides: every acknowledged edit present exactly once,
every seeded text intact, no two readers disagreeing about a pad.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence

from deployer.base.errors import CloudError, ConfigError
from deployer.measure.editors.models import DataReport
from deployer.measure.poller import Target

API = "api/1.2.15"
ATTEMPTS = 3
PAD_MISSING = "padID does not exist"

# A reader of one pad's text: returns the text, or None when the pad does not exist.
PadReader = Callable[[str], "str | None"]


def seed_text(pad: str, tag: str) -> str:
    """Known text for a pad: several lines, non-ASCII included, no final newline (Etherpad
    adds it; editors type before it). No tabs: Etherpad stores a tab as spaces."""
    return (f"deployer data check {tag}\npad {pad}\n"
            "Grüße, ünïcödé — ½ ∑ 日本語\nlast seeded line")


class EtherpadApi:
    """Etherpad's HTTP API at one base URL (the load balancer, or one instance)."""

    def __init__(self, url: str, api_key: str, *, timeout_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        Target.parse(url)
        self.url = url if url.endswith("/") else url + "/"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.sleep = sleep

    def call(self, method: str, **params: str) -> dict | None:
        """One API call; retried on transport errors and 5xx (a load balancer mid-change)."""
        body = urllib.parse.urlencode({"apikey": self.api_key, **params}).encode()
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(0.5 * attempt)
            try:
                with urllib.request.urlopen(f"{self.url}{API}/{method}", data=body,
                                            timeout=self.timeout_s) as response:
                    answer = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:
                last = exc
                if exc.code < 500:
                    raise CloudError(f"Etherpad API {method} at {self.url}: HTTP {exc.code}",
                                     hint="is this an Etherpad URL?") from exc
            except (OSError, ValueError) as exc:
                last = exc
        else:
            raise CloudError(f"Etherpad API {method} at {self.url} failed: {last}",
                             hint="is the Etherpad behind it running?") from last
        if answer.get("code") == 4:
            raise ConfigError("Etherpad rejected the API key", location=self.url,
                              hint="give the key the instances share (their APIKEY.txt)")
        if answer.get("code") != 0:
            raise _ApiAnswer(answer.get("message") or str(answer))
        return answer.get("data")

    def create_pad(self, pad: str, text: str) -> None:
        try:
            self.call("createPad", padID=pad, text=text)
        except _ApiAnswer:  # it exists already (a second seed of one pad): set its text
            self.call("setText", padID=pad, text=text)

    def text(self, pad: str) -> str | None:
        try:
            data = self.call("getText", padID=pad)
        except _ApiAnswer as answer:
            if PAD_MISSING in str(answer):
                return None
            raise CloudError(f"Etherpad API getText of {pad} at {self.url}: {answer}",
                             hint="see the Etherpad log") from answer
        return (data or {}).get("text", "")


def export_text(url: str, pad: str, *, timeout_s: float = 10.0,
                sleep: Callable[[float], None] = time.sleep) -> str | None:
    """A pad's text as any visitor can read it (``/p/<pad>/export/txt``), for a cloud that
    does not share its API key; None when the pad does not exist (404)."""
    base = url if url.endswith("/") else url + "/"
    address = f"{base}p/{urllib.parse.quote(pad, safe='')}/export/txt"
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            sleep(0.5 * attempt)
        try:
            with urllib.request.urlopen(address, timeout=timeout_s) as response:
                text = response.read().decode("utf-8")
            # The export ends with the pad's final newline, which getText also returns.
            return text
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code == 404:
                return None
            if exc.code < 500:
                raise CloudError(f"export of pad {pad} at {base}: HTTP {exc.code}",
                                 hint="is this an Etherpad URL?") from exc
        except (OSError, ValueError) as exc:
            last = exc
    raise CloudError(f"export of pad {pad} at {base} failed: {last}",
                     hint="is the Etherpad behind it running?") from last


class _ApiAnswer(Exception):
    """Etherpad answered with a non-zero code (not the API key's)."""


def judge(seeded: Mapping[str, str], acknowledged: Mapping[str, Sequence[str]],
          seen: Mapping[str, Mapping[str, str | None]]) -> DataReport:
    """The verdict. ``seen`` is pad -> reader name -> text (None: the pad is missing); the
    first reader of each pad is the load balancer, whose text users get."""
    pads = sorted(set(seeded) | set(acknowledged))
    lost: dict[str, list[str]] = {}
    duplicated: dict[str, list[str]] = {}
    diverged: list[str] = []
    damaged: list[str] = []
    details: list[str] = []
    for pad in pads:
        texts = seen.get(pad, {})
        text = next(iter(texts.values()), None)
        if len({value for value in texts.values()}) > 1:
            diverged.append(pad)
            who = ", ".join(f"{reader}: {_digest(value)}" for reader, value in texts.items())
            details.append(f"pad {pad} diverged ({who})")
        marks = list(dict.fromkeys(acknowledged.get(pad, ())))
        missing = [mark for mark in marks if text is None or mark not in text]
        twice = [mark for mark in marks if text is not None and text.count(mark) > 1]
        if missing:
            lost[pad] = missing
            details.append(f"pad {pad}: {len(missing)} acknowledged edits lost: "
                           f"{_names(missing)}")
        if twice:
            duplicated[pad] = twice
            details.append(f"pad {pad}: {len(twice)} edits present more than once: "
                           f"{_names(twice)}")
        intact = text is not None and text.startswith(seeded.get(pad, ""))
        if text is None:
            details.append(f"pad {pad} is missing")
        elif not intact:
            details.append(f"pad {pad}: the seeded text is no longer intact")
        if not intact or twice:
            damaged.append(pad)
    return DataReport(pads_checked=len(pads), pads_intact=len(pads) - len(damaged),
                      pads_diverged=len(diverged),
                      edits_lost=sum(len(marks) for marks in lost.values()),
                      lost_marks=lost, duplicated_marks=duplicated, diverged_pads=diverged,
                      damaged_pads=damaged, details=details)


def _names(marks: Sequence[str], limit: int = 12) -> str:
    shown = " ".join(marks[:limit])
    return shown + (f" and {len(marks) - limit} more" if len(marks) > limit else "")


def _digest(text: str | None) -> str:
    return "missing" if text is None else f"{len(text)} chars"


class DataCheck:
    """Seed pads before a rollout; read them back and judge after it.

    ``url`` is the load balancer; ``instance_urls`` (name -> URL of one live instance's
    own endpoint), when given to :meth:`verify`, are read too, so a split shows.
    """

    def __init__(self, url: str, api_key: str | None, *, tag: str = "seed",
                 api: Callable[[str], EtherpadApi] | None = None) -> None:
        self._api = api or (lambda base: EtherpadApi(base, api_key or ""))
        # Without the instances' API key nothing can be seeded, and pads are read as any
        # visitor reads them (their text export): acknowledged edits are still checked.
        self.can_seed = api is not None or api_key is not None
        self.url = url
        self.tag = tag
        self.seeded: dict[str, str] = {}

    def _reader(self, base: str) -> PadReader:
        if self.can_seed:
            return self._api(base).text
        return lambda pad: export_text(base, pad)

    def seed(self, pads: Sequence[str]) -> dict[str, str]:
        """Create ``pads`` with known text (through the load balancer); returns pad -> text.
        Seeds nothing without the API key."""
        if not self.can_seed:
            return {}
        api = self._api(self.url)
        for pad in pads:
            text = seed_text(pad, self.tag)
            api.create_pad(pad, text)
            self.seeded[pad] = text
        return dict(self.seeded)

    def verify(self, acknowledged: Mapping[str, Sequence[str]] | None = None,
               instance_urls: Mapping[str, str] | None = None) -> DataReport:
        readers: dict[str, PadReader] = {"load balancer": self._reader(self.url)}
        for name, url in (instance_urls or {}).items():
            readers[name] = self._reader(url)
        acknowledged = acknowledged or {}
        seen = {pad: {name: read(pad) for name, read in readers.items()}
                for pad in sorted(set(self.seeded) | set(acknowledged))}
        return judge(self.seeded, acknowledged, seen)
