"""The data check's judgement and its API use, with fake Etherpads."""

from __future__ import annotations

import pytest

from deployer.base.errors import ConfigError
from deployer.measure.editors import DataCheck, EtherpadApi, judge, seed_text
from deployer.measure.editors.datacheck import _ApiAnswer


class FakeEtherpad:
    """An Etherpad's pads behind the API methods the data check uses."""

    def __init__(self, pads: dict[str, str] | None = None) -> None:
        self.pads = dict(pads or {})
        self.calls: list[str] = []

    def create_pad(self, pad: str, text: str) -> None:
        self.calls.append(f"create {pad}")
        self.pads[pad] = text + "\n"

    def text(self, pad: str) -> str | None:
        self.calls.append(f"read {pad}")
        return self.pads.get(pad)


def check_with(fakes: dict[str, FakeEtherpad]) -> DataCheck:
    return DataCheck("http://lb/", "key", tag="t", api=lambda url: fakes[url])


def test_seeded_pads_with_every_acknowledged_edit_pass():
    lb = FakeEtherpad()
    check = check_with({"http://lb/": lb, "http://i-1/": lb})
    seeded = check.seed(["p1", "p2"])
    assert seeded["p1"] == seed_text("p1", "t") and lb.calls == ["create p1", "create p2"]
    lb.pads["p1"] = seeded["p1"] + "[m1][m2]\n"
    report = check.verify({"p1": ["[m1]", "[m2]"]}, {"i-1": "http://i-1/"})
    assert report.ok and report.details == []
    assert (report.pads_checked, report.pads_intact, report.pads_diverged,
            report.edits_lost) == (2, 2, 0, 0)


def test_lost_and_duplicated_edits_are_named():
    seeded = {"p1": "seed"}
    report = judge(seeded, {"p1": ["[a1]", "[a2]", "[a3]"]},
                   {"p1": {"load balancer": "seed[a1][a1]\n"}})
    assert report.edits_lost == 2 and report.lost_marks == {"p1": ["[a2]", "[a3]"]}
    assert report.duplicated_marks == {"p1": ["[a1]"]} and report.damaged_pads == ["p1"]
    assert report.pads_intact == 0 and not report.ok
    assert "pad p1: 2 acknowledged edits lost: [a2] [a3]" in report.details
    assert "pad p1: 1 edits present more than once: [a1]" in report.details


def test_instances_that_disagree_about_a_pad_are_diverged():
    report = judge({"p1": "seed"}, {"p1": ["[a1]"]},
                   {"p1": {"load balancer": "seed[a1]\n", "i-1": "seed[a1]\n",
                           "i-2": "seed[b7]\n"}})
    assert report.pads_diverged == 1 and report.diverged_pads == ["p1"]
    assert report.edits_lost == 0 and not report.ok
    assert report.details == ["pad p1 diverged (load balancer: 9 chars, i-1: 9 chars, "
                              "i-2: 9 chars)"]


def test_a_missing_or_overwritten_pad_is_not_intact():
    report = judge({"gone": "seed", "changed": "seed"}, {"gone": ["[x]"]},
                   {"gone": {"load balancer": None}, "changed": {"load balancer": "other\n"}})
    assert report.pads_intact == 0 and report.edits_lost == 1
    assert report.lost_marks == {"gone": ["[x]"]}
    assert "pad gone is missing" in report.details
    assert "pad changed: the seeded text is no longer intact" in report.details


def test_long_lists_of_lost_marks_are_shortened():
    marks = [f"[m{i}]" for i in range(20)]
    report = judge({}, {"p": marks}, {"p": {"load balancer": ""}})
    assert report.details[0].endswith("[m11] and 8 more")


class ScriptedApi(EtherpadApi):
    def __init__(self, answers: list) -> None:
        super().__init__("http://127.0.0.1:9/", "key", sleep=lambda s: None)
        self.answers = answers

    def call(self, method: str, **params: str):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_pad_that_exists_already_gets_its_text_set():
    api = ScriptedApi([_ApiAnswer("padID does already exist"), None])
    api.create_pad("p", "text")
    assert api.answers == []


def test_reading_a_missing_pad_is_none():
    assert ScriptedApi([_ApiAnswer("padID does not exist")]).text("p") is None
    assert ScriptedApi([{"text": "x\n"}]).text("p") == "x\n"


def test_a_wrong_api_key_says_which_key_to_give(monkeypatch):
    import io
    import urllib.request

    class Answer(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Answer(
        b'{"code": 4, "message": "no or wrong API Key", "data": null}'))
    with pytest.raises(ConfigError, match=r"rejected the API key.*APIKEY\.txt"):
        EtherpadApi("http://127.0.0.1:9/", "bad").text("p")
