"""The editors' accounts and their aggregate, from made-up driver events (no Node, no Etherpad)."""

from __future__ import annotations

import ipaddress

import pytest

from deployer.base.errors import StateError, UsageError
from deployer.measure.editors import EditorsSimulator, Window, build_records, summarize
from deployer.measure.editors.models import percentile
from deployer.measure.editors.simulator import source_addresses


def ev(t_s: float, editor: str, kind: str, **fields) -> dict:
    return {"t": t_s * 1000, "ed": editor, "ev": kind, **fields}


def session_events(editor: str, *, lost_at: float | None = None, back_at: float | None = None):
    events = [ev(0.0, editor, "connecting"), ev(0.1, editor, "session"),
              ev(0.2, editor, "ready", how="client_vars"),
              ev(1.0, editor, "typed", mark=f"[{editor}1]"),
              ev(1.01, editor, "ack", marks=[f"[{editor}1]"])]
    if lost_at is not None:
        events += [ev(lost_at, editor, "not_ready"),
                   ev(lost_at, editor, "disconnect", reason="transport close")]
    if back_at is not None:
        events += [ev(back_at, editor, "session"), ev(back_at + 0.05, editor, "ready")]
    return events


def test_a_quiet_run_has_no_windows_and_counts_everything():
    events = session_events("e1") + session_events("e2")
    records = build_records([("e1", "p1"), ("e2", "p1")], events, end_s=5)
    summary = summarize(records)
    assert (summary.editors, summary.pads, summary.sessions, summary.disconnects) == (2, 1, 2, 0)
    assert (summary.edits_typed, summary.edits_acknowledged, summary.edits_lost) == (2, 2, 0)
    assert summary.windows == [] and summary.interruption_ms == 0
    assert summary.reconnect_ms.model_dump() == {"p50": None, "p99": None, "max": None}
    assert [span.state for span in records[0].timeline] == ["connected"]
    assert records[0].timeline[0].start_s == pytest.approx(0.2)


def test_a_reconnect_is_timed_from_losing_the_pad_to_editing_again():
    events = session_events("e1", lost_at=2.0, back_at=3.5) + session_events("e2", lost_at=2.5,
                                                                              back_at=3.0)
    records = build_records([("e1", "p1"), ("e2", "p2")], events, end_s=6)
    assert records[0].reconnect_ms == [1550.0] and records[1].reconnect_ms == [550.0]
    assert [s.state for s in records[0].timeline] == ["connected", "reconnecting", "connected"]
    summary = summarize(records)
    assert summary.disconnects == 2 and summary.sessions == 4
    assert summary.reconnect_ms.p50 == 550.0 and summary.reconnect_ms.max == 1550.0
    assert summary.interruption_ms == 1550.0
    assert summary.windows == [Window(start_s=2.0, end_s=3.55, editors=2)]


def test_an_editor_who_gives_up_is_gone_until_the_end():
    events = [*session_events("e1", lost_at=2.0),
              ev(12.0, "e1", "gave_up", reason="reconnect_failed"),
              ev(12.0, "e1", "disconnect", reason="io client disconnect"),
              ev(13.0, "e1", "stopped", unsent=["[e1-2]"]),
              ev(13.0, "e1", "disconnect", reason="io client disconnect")]
    [record] = build_records([("e1", "p1")], events, end_s=20)
    assert record.gave_up and record.gave_up_reason == "reconnect_failed"
    assert record.disconnects == 1 and record.unsent == ["[e1-2]"]
    assert [(s.state, s.start_s, s.end_s) for s in record.timeline][1:] == [
        ("reconnecting", 2.0, 12.0), ("gone", 12.0, 20)]
    summary = summarize([record])
    assert summary.gave_up == 1 and summary.interruption_ms == 18000.0
    assert summary.windows == [Window(start_s=2.0, end_s=20, editors=1)]


def test_an_editor_who_never_loaded_its_pad_could_not_edit_at_all():
    events = [ev(0, "e1", "connecting"), ev(0.3, "e1", "connect_error", error="xhr poll error")]
    [record] = build_records([("e1", "p1")], events, end_s=8)
    assert [(s.state, s.start_s, s.end_s) for s in record.timeline] == [("gone", 0, 8)]
    assert record.gave_up and record.gave_up_reason == "never loaded the pad (xhr poll error)"
    summary = summarize([record])
    assert summary.interruption_ms == 8000.0 and summary.gave_up == 1


def test_lost_edits_are_the_acknowledged_marks_the_data_check_did_not_find():
    events = [*session_events("e1"), ev(1.5, "e1", "typed", mark="[e1-2]")]
    records = build_records([("e1", "p1")], events, end_s=3)
    summary = summarize(records, {"p1": ["[e11]", "[e1-2]", "[other]"]})
    assert summary.edits_typed == 2 and summary.edits_acknowledged == 1
    assert summary.edits_lost == 1  # the unacknowledged mark is not the server's loss


def test_windows_merge_overlaps_and_count_the_most_editors_at_once():
    events = (session_events("a", lost_at=1.0, back_at=2.0) + session_events("b", lost_at=1.5,
                                                                             back_at=3.0)
              + session_events("c", lost_at=5.0, back_at=5.5))
    records = build_records([("a", "p"), ("b", "p"), ("c", "p")], events, end_s=9)
    assert summarize(records).windows == [Window(start_s=1.0, end_s=3.05, editors=2),
                                          Window(start_s=5.0, end_s=5.55, editors=1)]


def test_the_summary_has_exactly_the_contract_keys():
    summary = summarize(build_records([("e1", "p1")], session_events("e1"), end_s=2))
    assert set(summary.model_dump()) == {
        "editors", "pads", "sessions", "disconnects", "reconnect_ms", "gave_up", "edits_typed",
        "edits_acknowledged", "edits_lost", "interruption_ms", "windows"}
    assert set(summary.reconnect_ms.model_dump()) == {"p50", "p99", "max"}


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, None)
    assert percentile([7.0], 99) == 7.0


def test_editors_are_spread_over_the_pads():
    sim = EditorsSimulator("http://127.0.0.1:9/", editors=5, pads=2, tag="t")
    assert sim.pads == ["deployer-editors-t-1", "deployer-editors-t-2"]
    assert [pad[-1] for _, pad in sim.assignments] == ["1", "2", "1", "2", "1"]
    assert sim.acknowledged() == {"deployer-editors-t-1": [], "deployer-editors-t-2": []}


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(UsageError, match="bad URL"):
        EditorsSimulator("ftp://nowhere/")
    with pytest.raises(StateError, match="at least 1"):
        EditorsSimulator("http://127.0.0.1:9/", editors=0)
    with pytest.raises(StateError, match="not started"):
        EditorsSimulator("http://127.0.0.1:9/").stop()


def test_editors_on_a_loopback_load_balancer_each_get_an_address_of_their_own():
    addresses = source_addresses("http://127.0.0.1:8080/", 300)
    assert len(set(addresses)) == 300 and addresses[0] == "127.77.0.2"
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)
    assert source_addresses("http://localhost:8080/", 2) == ["127.77.0.2", "127.77.0.3"]
    # a real load balancer sees this machine's one address, whatever the editors bind
    assert source_addresses("http://etherpad-alb-1.eu-west-1.elb.amazonaws.com/", 6) == []
    assert source_addresses("http://10.0.0.5/", 6) == []
