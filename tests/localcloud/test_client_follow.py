"""The local cloud client follows an operation whatever the supervisor has already done."""

from __future__ import annotations

from deployer.base.errors import NotFound
from deployer.localcloud.client import LocalCloud
from tests.support.clock import FakeClock


class AnsweringCloud(LocalCloud):
    """The supervisor's answers scripted by path; a stack that is gone is NotFound."""

    def __init__(self, tmp_path, answers) -> None:
        super().__init__(tmp_path, clock=FakeClock())
        self.answers = answers
        self.asked: list[str] = []

    def _call(self, method, path, body=None):
        self.asked.append(path)
        answer = next(v for k, v in self.answers.items() if path.startswith(k))
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_delete_that_is_over_before_the_first_look_is_followed(tmp_path):
    """A stack with nothing running (half created) is deleted in milliseconds: the first
    look at its events found it gone, and the follow raised NotFound instead of returning."""
    cloud = AnsweringCloud(tmp_path, {
        "/stacks/etherpad-x/events": NotFound("stack etherpad-x does not exist"),
        "/operations/op-1": {"status": "succeeded", "result": None, "events": []},
    })
    assert cloud._follow({"id": "op-1", "kind": "delete"}, "etherpad-x", lambda e: None) is None
    assert cloud.asked[0] == "/stacks/etherpad-x/events"
