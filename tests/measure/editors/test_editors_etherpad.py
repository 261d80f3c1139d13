"""The editors and the data check against real Etherpad 1.8.14: able to pass and able to fail."""

from __future__ import annotations

import time

import pytest

from deployer.measure.editors import DataCheck, EditorsSimulator, summarize
from tests.measure.editors.conftest import API_KEY

pytestmark = pytest.mark.slow


def wait_healthy(lb, *targets: str, timeout_s: float = 20) -> None:
    for target in targets:
        assert lb.wait_healthy(target, timeout_s), lb.states()


def run_editors(url: str, driver_modules, *, seconds: float, editors: int = 6, pads: int = 3,
                during=None, type_interval_s: float = 1.0):
    sim = EditorsSimulator(url, editors=editors, pads=pads, type_interval_s=type_interval_s,
                           modules=driver_modules)
    check = DataCheck(url, API_KEY, tag=sim.tag)
    check.seed([*sim.pads, f"untouched-{sim.tag}"])
    sim.start()
    ready = sim.wait_ready(20)
    if during is not None:
        during(sim)
    time.sleep(seconds)
    records = sim.stop()
    return sim, check, records, ready


def test_an_edit_round_trip_on_one_etherpad(etherpads, driver_modules):
    pad_server = etherpads("one")
    sim, check, records, ready = run_editors(pad_server.url, driver_modules, seconds=5)
    assert ready
    data = check.verify(sim.acknowledged(), {"one": pad_server.url})
    summary = summarize(records, data.lost_marks)
    assert summary.editors == 6 and summary.pads == 3
    assert summary.gave_up == 0 and summary.disconnects == 0
    assert summary.sessions == 6
    assert summary.edits_acknowledged >= 6 * 3, summary
    assert summary.edits_typed - summary.edits_acknowledged <= 6  # at most the last ones
    assert summary.edits_lost == 0 and summary.windows == []
    assert data.ok, data.details
    assert (data.pads_checked, data.pads_intact, data.pads_diverged) == (4, 4, 0)
    for record in records:
        assert not record.errors, record.errors
        assert record.acknowledged == record.typed[:len(record.acknowledged)]
    text = pad_server.api("getText", padID=sim.pads[0])["text"]
    assert all(text.count(mark) == 1 for mark in sim.acknowledged()[sim.pads[0]])


def test_editors_work_through_the_local_load_balancer(etherpads, load_balancer, driver_modules):
    pad_server = etherpads("one")
    load_balancer.register("i-one", pad_server.port)
    wait_healthy(load_balancer, "i-one")
    sim, check, records, ready = run_editors(load_balancer.url, driver_modules, seconds=5)
    assert ready
    data = check.verify(sim.acknowledged(), {"i-one": pad_server.url})
    summary = summarize(records, data.lost_marks)
    assert summary.gave_up == 0 and summary.edits_lost == 0, summary
    assert summary.edits_acknowledged >= 6 * 3
    assert data.ok, data.details
    # The session upgraded to a websocket through the proxy, as a browser's does.
    upgrades = [e for e in sim.events() if e["ev"] == "upgrade"]
    assert {e["ed"] for e in upgrades} == {f"e{i}" for i in range(1, 7)}


def test_two_etherpads_round_robin_without_pad_affinity_is_caught(etherpads, load_balancer,
                                                                   driver_modules):
    # Plain Etherpads: the release plugin's pad lease off, as without deployer's stacks.
    first = etherpads("first", ETHERPAD_PAD_LEASE="off")
    second = etherpads("second", ETHERPAD_PAD_LEASE="off")
    load_balancer.register("i-first", first.port)
    load_balancer.register("i-second", second.port)
    wait_healthy(load_balancer, "i-first", "i-second")
    sim, check, records, _ = run_editors(load_balancer.url, driver_modules, seconds=8)
    data = check.verify(sim.acknowledged(), {"i-first": first.url, "i-second": second.url})
    summary = summarize(records, data.lost_marks)
    assert summary.gave_up > 0 or summary.edits_lost > 0 or data.pads_diverged > 0, \
        (summary, data)
    if summary.gave_up:
        assert all(r.gave_up_reason for r in records if r.gave_up)
    if data.edits_lost:
        assert data.lost_marks and any("acknowledged edits lost" in d for d in data.details)
    if data.pads_diverged:
        assert data.diverged_pads and any("diverged" in d for d in data.details)
    assert summary.disconnects > 0 or summary.edits_lost > 0 or data.pads_diverged > 0


def test_two_etherpads_round_robin_with_the_pad_lease_serve_editors(etherpads, load_balancer,
                                                                    driver_modules):
    """The same two instances with the pad lease (the default): one serves the pads, the
    other forwards to it, so editors connect, nothing is lost and no pad diverges."""
    first, second = etherpads("first"), etherpads("second")
    load_balancer.register("i-first", first.port)
    load_balancer.register("i-second", second.port)
    wait_healthy(load_balancer, "i-first", "i-second")
    sim, check, records, ready = run_editors(load_balancer.url, driver_modules, seconds=8)
    data = check.verify(sim.acknowledged(), {"i-first": first.url, "i-second": second.url})
    summary = summarize(records, data.lost_marks)
    assert ready, records
    assert (summary.gave_up, summary.edits_lost, data.pads_diverged) == (0, 0, 0), (summary, data)
    assert summary.edits_acknowledged > 0 and data.ok, data


def test_editors_reconnect_to_the_instance_that_takes_over(etherpads, load_balancer,
                                                           driver_modules):
    old = etherpads("old")
    load_balancer.register("i-old", old.port)
    wait_healthy(load_balancer, "i-old")
    new = etherpads("new")  # on the same database, not yet serving

    def cut_over(sim):
        time.sleep(3)
        # The old instance dies with its editors connected; the new one takes the traffic.
        old.stop()
        load_balancer.deregister("i-old")
        load_balancer.register("i-new", new.port)

    # Four editors typing every 2 s, each from an address of its own (as users come from
    # theirs; Etherpad limits commits to 10 messages a second per address).
    sim, check, records, ready = run_editors(load_balancer.url, driver_modules, seconds=12,
                                             during=cut_over, editors=4, pads=2,
                                             type_interval_s=2.0)
    assert ready
    data = check.verify(sim.acknowledged(), {"i-new": new.url})
    summary = summarize(records, data.lost_marks)
    assert summary.disconnects >= 4, summary
    assert summary.gave_up == 0, [r.gave_up_reason for r in records]
    assert len(summary.windows) >= 1 and summary.interruption_ms > 0
    assert summary.reconnect_ms.max is not None and summary.reconnect_ms.max < 15000
    assert all(len(r.reconnect_ms) >= 1 for r in records)
    assert summary.sessions >= 8
    assert data.edits_lost == 0 and data.pads_diverged == 0, data.details
    assert data.ok, data.details
    # Typing went on after the cut-over, and was acknowledged by the new instance.
    after = [e for e in sim.events() if e["ev"] == "ack" and e["t"] > 6000]
    assert after
