"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched)
that opens offline, in a CI artifact viewer or from a mail attachment.

Per strategy: the run's phases, then a timeline of the rollout on the probe clock — every
probe coloured by the release that answered it or by its failure class, downtime windows,
probe latency, one lane per load balancer target with its health state over time, and the
instance and cloud events on the same clock — then the events as a table. Above them the
comparison table and the run's settings. Hover any mark for its details (SVG titles).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from pathlib import Path

from deployer.report.compare_table import StrategyView, measured_rows, qualitative_rows
from deployer.report.release import data_line, editors_line
from deployer.report.rollout import LAUNCH_REASON, LIFECYCLE_RESOURCE

WIDTH = 1240
LEFT = 170  # lane labels
RIGHT = 16
PLOT = WIDTH - LEFT - RIGHT

VERSION_COLOURS = ["#4e79a7", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2"]
FAILURE_COLOURS = {"refused": "#e15759", "reset": "#ff7f0e", "timeout": "#8b1a1a",
                   "closed": "#d4a017", "dns": "#6b4c9a", "error": "#222222"}
HTTP_FAILURE = "#c2185b"  # any http_5xx / 4xx answer
STATE_COLOURS = {"initial": "#edc948", "healthy": "#59a14f", "unhealthy": "#e15759",
                 "draining": "#f28e2b", "unused": "#e6e6e6", "unavailable": "#bab0ac"}
EDITOR_COLOURS = {"connected": "#59a14f", "reconnecting": "#f28e2b", "gone": "#e15759",
                  "loading": "#edc948"}
PHASE_COLOURS = {"environment": "#bab0ac", "prepare": "#76b7b2", "rollout": "#4e79a7",
                 "rollback": "#e15759", "verify": "#59a14f"}
LIFECYCLE_COLOURS = {"BlockTraffic": "#f28e2b", "AllowTraffic": "#59a14f",
                     "DownloadBundle": "#76b7b2", "Install": "#4e79a7",
                     "AfterInstall": "#9c755f", "ApplicationStop": "#bab0ac",
                     "ApplicationStart": "#b07aa1", "ValidateService": "#edc948"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 24px; color: #1d1d1f; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #555; margin: 0 0 16px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
         font-size: 12px; font-weight: 600; vertical-align: middle; }
.succeeded { background: #2e7d32; } .downtime, .failed { background: #c62828; }
.data_lost { background: #6a1b9a; }
.rolled_back { background: #ef6c00; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f7; font-weight: 600; }
table.cmp td { max-width: 340px; } table.cmp td.label { white-space: nowrap; color: #333; }
tr.qual td { color: #555; background: #fafafa; font-size: 13px; }
tr.sep td { border: none; padding: 2px; background: #fff; }
table.kv td:first-child { color: #555; white-space: nowrap; }
table.events { font-size: 12px; } table.events td { padding: 2px 6px; }
svg { display: block; margin: 4px 0 8px; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg text.lane { font-size: 12px; fill: #222; }
svg text.small { font-size: 10px; fill: #555; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: #333;
          margin: 2px 0 6px; }
.legend span i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
                 vertical-align: -2px; border-radius: 2px; }
details { margin: 6px 0 14px; } summary { cursor: pointer; color: #333; }
.note { color: #8a4b00; }
section.strategy { border-top: 2px solid #e0e0e0; margin-top: 28px; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _badge(outcome: str, zero_downtime: bool, *, users_unaffected: bool = True,
           data_lost: bool = False) -> str:
    key = outcome if (outcome != "succeeded" or zero_downtime) else "downtime"
    text = key.replace("_", " ") + ("" if zero_downtime else " · downtime"
                                    if key != "downtime" else "")
    if data_lost and key != "data_lost":
        key, text = "data_lost", text + " · data lost"
    elif zero_downtime and not users_unaffected and outcome == "succeeded":
        key, text = "downtime", "succeeded · editors affected"
    return f'<span class="badge {_e(key)}">{_e(text)}</span>'


def _report_badge(r) -> str:
    return _badge(r.outcome, r.zero_downtime, users_unaffected=r.users_unaffected,
                  data_lost=r.data is not None and not r.data.ok)


def _kv_table(rows: Iterable[tuple[str, object]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows
                   if v not in (None, ""))
    return f'<table class="kv">{body}</table>'


def comparison_table(views: list[StrategyView]) -> str:
    names = [v.name for v in views]
    head = "<tr><th></th>" + "".join(
        f"<th>{_e(v.name)} {_report_badge(v.report)}</th>"
        for v in views) + "</tr>"
    rows = [f'<tr><td class="label">{_e(label)}</td>'
            + "".join(f"<td>{_e(cells[n])}</td>" for n in names) + "</tr>"
            for label, cells in measured_rows(views)]
    rows.append(f'<tr class="sep"><td colspan="{len(names) + 1}"></td></tr>')
    rows += [f'<tr class="qual"><td class="label">{_e(label)}</td>'
             + "".join(f"<td>{_e(cells[n])}</td>" for n in names) + "</tr>"
             for label, cells in qualitative_rows(names)]
    return f'<table class="cmp">{head}{"".join(rows)}</table>'


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{_e(label)}</span>' for label, c in items) + "</div>"


class _Axis:
    """Seconds on the probe clock → x in the SVG."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, max(end, start + 1.0)

    def x(self, t: float) -> float:
        t = min(max(t, self.start), self.end)
        return round(LEFT + (t - self.start) / (self.end - self.start) * PLOT, 2)

    def ticks(self) -> list[float]:
        span = self.end - self.start
        step = next(s for s in (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1e9)
                    if span / s <= 14)
        first = (int(self.start // step) + 1) * step if self.start % step else self.start
        ticks, t = [], first
        while t <= self.end:
            ticks.append(round(t, 3))
            t += step
        return ticks


def _version_colours(view: StrategyView) -> dict[str, str]:
    r = view.report
    order = [r.from_release, r.release] + [v.version for v in r.versions]
    colours: dict[str, str] = {}
    for version in order:
        if version and version not in colours:
            colours[version] = VERSION_COLOURS[min(len(colours), len(VERSION_COLOURS) - 1)]
    return colours


def _failure_colour(outcome: str) -> str:
    return HTTP_FAILURE if outcome.startswith("http_") else FAILURE_COLOURS.get(outcome,
                                                                               "#222222")


def _probe_runs(timeline: list[list], hz: float) -> list[tuple[float, float, str, str | None, int]]:
    """Consecutive probes with the same answer, merged: (start, end, outcome, version, n)."""
    runs: list[list] = []
    step = 1.0 / hz if hz else 0.05
    for sent, outcome, version, _latency in sorted(timeline, key=lambda p: p[0]):
        key = (outcome, version if outcome == "ok" else None)
        if runs and (runs[-1][2], runs[-1][3]) == key and sent - runs[-1][1] < 3 * step:
            runs[-1][1] = sent + step
            runs[-1][4] += 1
        else:
            runs.append([sent, sent + step, key[0], key[1], 1])
    return [tuple(r) for r in runs]


def _instance_of(event: dict) -> tuple[str | None, str]:
    """(instance id, short label) of an instance event, or (None, label) for the rest."""
    match = LIFECYCLE_RESOURCE.match(event.get("resource") or "")
    if match:
        return match[2], match[3]
    reason = event.get("reason") or ""
    launch = LAUNCH_REASON.search(reason)
    if launch:
        return launch[1], "launch"
    for word, label in (("Terminating EC2 instance ", "terminate"),
                        ("UniqueId ", "signal"), ("instance ", "instance")):
        if word in reason:
            rest = reason.split(word, 1)[1].split()
            if rest and rest[0].rstrip(":,").startswith("i-"):
                return rest[0].rstrip(":,"), label
    return None, event.get("status", "")


def timeline_svg(view: StrategyView) -> str:
    """The rollout on the probe clock: phases, probes, latency, target lanes, events."""
    r = view.report
    offset = r.probe_offset_s
    phases = [(p.name, p.start_s - offset, p.start_s - offset + p.seconds) for p in r.phases
              if p.name != "environment" and p.name != "prepare"]
    probe_end = max((p[0] + p[3] / 1000 for p in r.timeline), default=r.duration_s)
    end = max([probe_end] + [e for _, _, e in phases]) + 0.5
    axis = _Axis(-1.0, end)
    colours = _version_colours(view)
    parts: list[str] = []
    y = 4

    def lane_label(text: str, y_mid: float, cls: str = "lane", title: str = "") -> None:
        tip = f"<title>{_e(title)}</title>" if title else ""
        parts.append(f'<text class="{cls}" x="{LEFT - 8}" y="{y_mid + 4:.1f}" '
                     f'text-anchor="end">{_e(text)}{tip}</text>')

    # phases
    lane_label("phases", y + 9)
    for name, start, stop in phases:
        x0, x1 = axis.x(start), axis.x(stop)
        parts.append(f'<rect x="{x0}" y="{y}" width="{max(x1 - x0, 1):.2f}" height="18" '
                     f'fill="{PHASE_COLOURS.get(name, "#999")}" opacity="0.85">'
                     f"<title>{_e(name)}: {stop - start:.2f} s</title></rect>")
        if x1 - x0 > 60:
            parts.append(f'<text x="{x0 + 4}" y="{y + 13}" style="fill:#fff">'
                         f"{_e(name)} {stop - start:.1f} s</text>")
    y += 26
    lanes_top = y

    # probes
    lane_label("probes", y + 14, title="each probe coloured by the release that answered, "
                                        "or by why it failed")
    parts.append(f'<rect x="{LEFT}" y="{y}" width="{PLOT}" height="28" fill="#f4f4f4"/>')
    for start, stop, outcome, version, n in _probe_runs(r.timeline, r.hz):
        fill = colours.get(version or "", "#999") if outcome == "ok" else _failure_colour(outcome)
        what = f"{version or 'no version'}" if outcome == "ok" else f"failed: {outcome}"
        x0, x1 = axis.x(start), axis.x(stop)
        parts.append(f'<rect x="{x0}" y="{y}" width="{max(x1 - x0, 0.8):.2f}" height="28" '
                     f'fill="{fill}"><title>{n} probe(s) {start:.2f}–{stop:.2f} s: '
                     f"{_e(what)}</title></rect>")
    for w in r.downtime_windows:
        x0 = axis.x(w.start_s)
        classes = ", ".join(f"{k} {v}" for k, v in w.by_class.items())
        parts.append(f'<path d="M{x0 - 5},{y - 7} L{x0 + 5},{y - 7} L{x0},{y - 1} Z" '
                     f'fill="#c62828"><title>downtime {w.start_s:.2f}–{w.end_s:.2f} s '
                     f"({w.duration_ms:.0f} ms): {_e(classes)}</title></path>")
    y += 34

    # latency
    latencies = [p[3] for p in r.timeline if p[1] == "ok"]
    top = max(sorted(latencies)[int(len(latencies) * 0.99)] if latencies else 100.0, 50.0)
    lane_label(f"latency ≤ {top:.0f} ms", y + 16,
               title=f"answer latency per pixel column, top of the lane {top:.0f} ms")
    parts.append(f'<rect x="{LEFT}" y="{y}" width="{PLOT}" height="32" fill="#fafafa"/>')
    columns: dict[int, float] = {}
    for sent, _outcome, _version, latency in r.timeline:
        column = int(axis.x(sent))
        columns[column] = max(columns.get(column, 0.0), latency)
    if columns:
        points = " ".join(f"{c},{y + 32 - min(v / top, 1.0) * 30:.1f}"
                          for c, v in sorted(columns.items()))
        parts.append(f'<polyline points="{points}" fill="none" stroke="#555" '
                     f'stroke-width="1"/>')
    y += 40

    # target health lanes, instance events on them
    changes = sorted(r.target_health, key=lambda h: h["at_s"])
    targets: list[str] = []
    for change in changes:
        relevant = change["at_s"] >= axis.start or change["to_state"] != "unused"
        if relevant and change["target_id"] not in targets:
            targets.append(change["target_id"])
    events = sorted(r.events, key=lambda e: e["at_s"])
    by_instance: dict[str, list[tuple[dict, str]]] = {}
    other: list[dict] = []
    for event in events:
        instance, label = _instance_of(event)
        if instance and instance in targets:
            by_instance.setdefault(instance, []).append((event, label))
        elif event["at_s"] >= axis.start - 0.5:
            other.append(event)
    for target in targets:
        own = [c for c in changes if c["target_id"] == target]
        before = [c for c in own if c["at_s"] < axis.start]
        state = before[-1]["to_state"] if before else own[0]["from_state"]
        if state == "unused" and all(c["at_s"] < axis.start for c in own):
            continue  # gone before the rollout started
        segments, since = [], axis.start
        for c in own:
            if c["at_s"] < axis.start:
                continue
            segments.append((since, c["at_s"], state))
            since, state = c["at_s"], c["to_state"]
        segments.append((since, axis.end, state))
        lane_label(target, y + 9, title=f"target {target}: health as the load balancer saw it")
        for start, stop, st in segments:
            x0, x1 = axis.x(start), axis.x(stop)
            if x1 - x0 <= 0:
                continue
            parts.append(f'<rect x="{x0}" y="{y}" width="{x1 - x0:.2f}" height="18" '
                         f'fill="{STATE_COLOURS.get(st, "#999")}"><title>{_e(target)} '
                         f"{_e(st)} {start:.2f}–{stop:.2f} s</title></rect>")
            if x1 - x0 > 70 and st != "unused":  # mid-segment: clear of event marks
                parts.append(f'<text class="small" x="{(x0 + x1) / 2:.1f}" y="{y + 13}" '
                             f'text-anchor="middle">{_e(st)}</text>')
        lifecycle = _lifecycle_segments(by_instance.get(target, []))
        for name, start, stop in lifecycle:
            x0, x1 = axis.x(start), axis.x(stop)
            parts.append(f'<rect x="{x0}" y="{y + 20}" width="{max(x1 - x0, 1.5):.2f}" '
                         f'height="6" fill="{LIFECYCLE_COLOURS.get(name, "#888")}">'
                         f"<title>{_e(name)} {start:.2f}–{stop:.2f} s "
                         f"({stop - start:.2f} s)</title></rect>")
        for event, label in by_instance.get(target, []):
            if label in ("launch", "terminate", "signal") and event["at_s"] >= axis.start:
                x = axis.x(event["at_s"])
                mark = {"launch": "▲", "terminate": "✕", "signal": "✓"}[label]
                parts.append(f'<text x="{x}" y="{y + 13}" text-anchor="middle" '
                             f'style="font-weight:700;fill:#111">{mark}<title>{event["at_s"]:.2f}'
                             f" s {_e(event['status'])}: {_e(event.get('reason') or '')}"
                             f"</title></text>")
        y += 30 if lifecycle else 24

    # editors: a lane each (connected, reconnecting, gone), a mark per lost edit
    for editor in r.editor_timeline:
        name = f"{editor['editor']} · {editor['pad'].rsplit('-', 1)[-1]}"
        lane_label(name, y + 7, title=f"editor {editor['editor']} on pad {editor['pad']}"
                   + (f"; gave up: {editor['gave_up_reason']}" if editor.get("gave_up_reason")
                      else ""))
        for state, start, stop in editor["spans"]:
            x0, x1 = axis.x(start), axis.x(stop)
            if x1 - x0 <= 0:
                continue
            parts.append(f'<rect x="{x0}" y="{y}" width="{x1 - x0:.2f}" height="14" '
                         f'fill="{EDITOR_COLOURS.get(state, "#999")}"><title>'
                         f"{_e(editor['editor'])} {_e(state)} {start:.2f}–{stop:.2f} s"
                         f"</title></rect>")
        for mark, at in editor.get("lost", []):
            x = axis.x(at)
            parts.append(f'<text x="{x}" y="{y + 11}" text-anchor="middle" class="lost" '
                         f'style="font-weight:700;fill:#b00020">✕<title>lost edit {_e(mark)}, '
                         f"acknowledged at {at:.2f} s</title></text>")
        y += 18

    # other cloud events (stack, deployment, image)
    if other:
        lane_label("cloud events", y + 8)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y + 8}" y2="{y + 8}" '
                     f'stroke="#ccc"/>')
        for event in other:
            x = axis.x(event["at_s"])
            status = event["status"]
            fill = ("#c62828" if "FAIL" in status.upper() or "ROLLBACK" in status.upper()
                    else "#2e7d32" if "COMPLETE" in status or status == "Succeeded"
                    else "#555")
            parts.append(f'<circle cx="{x}" cy="{y + 8}" r="4" fill="{fill}"><title>'
                         f"{event['at_s']:.2f} s {_e(event['source'])} "
                         f"{_e(event['resource'])} {_e(status)} "
                         f"{_e(event.get('reason') or '')}</title></circle>")
        y += 22

    # cut-over markers and the axis
    m = view.measures
    for t, label in ((m.first_new_s, "first new"), (m.last_old_s, "last old")):
        if t is not None:
            x = axis.x(t)
            parts.append(f'<line x1="{x}" x2="{x}" y1="{lanes_top - 4}" y2="{y}" '
                         f'stroke="#111" stroke-dasharray="3,3" stroke-width="1"/>')
            anchor = "end" if label == "first new" else "start"
            dx = -3 if anchor == "end" else 3
            parts.append(f'<text class="small" x="{x + dx}" y="{y + 12}" '
                         f'text-anchor="{anchor}">{label} {t:.2f} s</text>')
    y += 16
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y}" y2="{y}" stroke="#888"/>')
    for t in axis.ticks():
        x = axis.x(t)
        parts.append(f'<line x1="{x}" x2="{x}" y1="{y}" y2="{y + 4}" stroke="#888"/>'
                     f'<text class="small" x="{x}" y="{y + 15}" text-anchor="middle">'
                     f"{t:g}</text>")
    parts.append(f'<text class="small" x="{LEFT - 8}" y="{y + 15}" text-anchor="end">'
                 f"s since rollout start</text>")
    y += 22
    return (f'<svg viewBox="0 0 {WIDTH} {y}" '
            f'width="{WIDTH}" height="{y}" role="img" aria-label="timeline of the '
            f'{_e(r.strategy)} rollout">{"".join(parts)}</svg>')


def _lifecycle_segments(events: list[tuple[dict, str]]) -> list[tuple[str, float, float]]:
    started: dict[str, float] = {}
    segments = []
    for event, label in events:
        if not LIFECYCLE_RESOURCE.match(event.get("resource") or ""):
            continue
        if event["status"] == "InProgress":
            started[label] = event["at_s"]
        elif label in started:
            segments.append((label, started.pop(label), event["at_s"]))
    return segments


def phases_bar(view: StrategyView) -> str:
    """The whole run on the run clock, phase by phase."""
    r = view.report
    total = max(sum(p.seconds for p in r.phases), 0.001)
    x, parts = float(LEFT), []
    parts.append(f'<text class="lane" x="{LEFT - 8}" y="15" text-anchor="end">whole run</text>')
    for p in r.phases:
        w = p.seconds / total * PLOT
        parts.append(f'<rect x="{x:.2f}" y="2" width="{max(w, 1):.2f}" height="20" '
                     f'fill="{PHASE_COLOURS.get(p.name, "#999")}"><title>{_e(p.name)}: '
                     f"{p.seconds:.2f} s</title></rect>")
        if w > 70:
            parts.append(f'<text x="{x + 4:.2f}" y="16" style="fill:#fff">{_e(p.name)} '
                         f"{p.seconds:.1f} s</text>")
        x += w
    return (f'<svg viewBox="0 0 {WIDTH} 26" width="{WIDTH}"'
            f' height="26">{"".join(parts)}</svg>')


def _legends(views: list[StrategyView]) -> str:
    versions: dict[str, str] = {}
    for view in views:
        for version, colour in _version_colours(view).items():
            versions.setdefault(version, colour)
    failures = sorted({p[1] for v in views for p in v.report.timeline if p[1] != "ok"})
    items = [(f"answered by {v}", c) for v, c in versions.items()]
    items += [(f"failed: {f}", _failure_colour(f)) for f in failures] or [
        ("failed probe (none in this report)", FAILURE_COLOURS["refused"])]
    states = [(f"target {s}", c) for s, c in STATE_COLOURS.items() if s != "unavailable"]
    phases = [(f"phase {p}", c) for p, c in PHASE_COLOURS.items()]
    lifecycle = [(f"CodeDeploy {n}", c) for n, c in LIFECYCLE_COLOURS.items()]
    editors = [(f"editor {s}", c) for s, c in EDITOR_COLOURS.items() if s != "loading"]
    return (_legend(items) + _legend(states) + _legend(phases)
            + (_legend(lifecycle) if any(v.measures.in_place_s is not None for v in views)
               else "")
            + (_legend(editors) + '<div class="legend"><span style="color:#b00020">✕ lost '
               "edit (an acknowledged edit not in the pad afterwards)</span></div>"
               if any(v.report.editor_timeline for v in views) else "")
            + '<div class="legend"><span>▲ launch</span><span>✓ cfn-signal</span>'
              "<span>✕ terminate</span><span>● cloud event</span>"
              '<span style="color:#c62828">▼ downtime window</span></div>')


def strategy_section(view: StrategyView) -> str:
    r, m, f = view.report, view.measures, view.floor
    head = (f'<section class="strategy"><h2>{_e(r.strategy)} '
            f"{_report_badge(r)}</h2>")
    line = (f"{_e(r.from_release)} → {_e(r.release)} · release {m.release_s:.1f} s "
            f"(prepare {m.phases.get('prepare', 0):.1f} s + roll out "
            f"{m.phases.get('rollout', 0):.1f} s)")
    if f is not None and f.ratio_to_floor is not None:
        line += f" · floor {f.floor_s:.1f} s, actual / floor {f.ratio_to_floor:.2f}×"
    line += (f" · {m.failed_probes} of {m.probes} probes failed · run {r.run_id}")
    body = [head, f'<p class="sub">{line}</p>']
    if r.editors is not None:
        body.append(f'<p class="sub">editors: {_e(editors_line(r.editors))}</p>')
    if r.data is not None:
        cls = "sub" if r.data.ok else "note"
        body.append(f'<p class="{cls}">data check: {_e(data_line(r.data))}</p>')
        body += [f'<p class="note">{_e(d)}</p>' for d in r.data.details[:10]]
    if r.error:
        body.append(f'<p class="note">{_e(r.error)}</p>')
    if f is not None and f.notes:
        body.append("".join(f'<p class="note">floor: {_e(n)}</p>' for n in f.notes))
    body.append(phases_bar(view))
    body.append("<h3>Rollout timeline</h3>")
    body.append(timeline_svg(view))
    rows = "".join(
        f"<tr><td>{e['at_s']:.2f}</td><td>{_e(e['source'])}</td><td>{_e(e['resource'])}</td>"
        f"<td>{_e(e['status'])}</td><td>{_e(e.get('reason') or '')}</td></tr>"
        for e in sorted(r.events, key=lambda e: e["at_s"]))
    health = "".join(
        f"<tr><td>{h['at_s']:.2f}</td><td>{_e(h['target_id'])}</td><td>{_e(h['from_state'])}"
        f" → {_e(h['to_state'])}</td><td>{_e(h.get('reason') or '')}</td></tr>"
        for h in sorted(r.target_health, key=lambda h: h["at_s"]))
    body.append(f"<details><summary>{len(r.events)} cloud events (seconds on the probe clock;"
                f" negative: before the rollout)</summary><table class=\"events\"><tr><th>s</th>"
                f"<th>source</th><th>resource</th><th>status</th><th>reason</th></tr>{rows}"
                f"</table></details>")
    body.append(f"<details><summary>{len(r.target_health)} target health transitions"
                f"</summary><table class=\"events\"><tr><th>s</th><th>target</th>"
                f"<th>state</th><th>reason</th></tr>{health}</table></details>")
    body.append("</section>")
    return "".join(body)


def _page(title: str, subtitle: str, settings: list[tuple[str, object]],
          views: list[StrategyView], notes: list[str], runs: str = "") -> str:
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1><p class=\"sub\">{subtitle}</p>",
        "".join(f'<p class="note">{_e(n)}</p>' for n in notes),
        "<h2>Comparison</h2>" if len(views) > 1 else "<h2>Measured</h2>",
        comparison_table(views),
        "<h2>Settings</h2>", _kv_table(settings),
        f"<h3>Runs</h3>{runs}" if runs else "",
        "<h2>Timelines</h2>", _legends(views),
        "".join(strategy_section(v) for v in views),
        f'<p class="sub" style="margin-top:32px">generated by deployer at {generated}</p>',
        "</body></html>\n"])


def _machine_rows(machine: dict | None) -> list[tuple[str, object]]:
    if not machine:
        return []
    text = ", ".join(f"{k} {v if not isinstance(v, list) else ' / '.join(map(str, v))}"
                     for k, v in machine.items())
    return [("machine", text)]


def _started(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else ""


def render_comparison(comparison) -> str:
    """The report of a `deployer compare` run (a :class:`deployer.core.compare.Comparison`)."""
    c = comparison
    views = [StrategyView.from_entry(name, entry) for name, entry in c.strategies.items()]
    summary = c.summary
    subtitle = (f"{_badge(summary.outcome, summary.zero_downtime)} "
                f"{_e(c.from_release)} → {_e(c.release)} through "
                f"{_e(', '.join(c.strategies))} · fastest first: "
                f"{_e(', '.join(summary.ranking) or '—')} · {summary.seconds:.0f} s in all")
    settings = [("release", c.release), ("from release", c.from_release),
                ("strategies", ", ".join(c.strategies)), ("source", c.source),
                ("target", c.target), ("probes per second", f"{c.hz:g}"),
                ("repetitions", c.repeat),
                ("budget", f"{c.budget_s:g} s" if c.budget_s is not None else ""),
                ("started", _started(c.started_at)), ("compare run id", c.run_id)]
    return _page(f"deployer compare: {c.release}", subtitle,
                 settings + _machine_rows(c.machine), views, summary.notes,
                 runs=runs_table(c.runs))


def runs_table(runs) -> str:
    """Every release run of a compare, resets included (each one is in the run history)."""
    rows = "".join(
        f"<tr><td>{_e(r.strategy)}</td><td>{r.repetition}</td><td>{_e(r.role.value)}</td>"
        f"<td>{_e(r.from_release)} → {_e(r.release)}</td><td>{_e(r.outcome)}</td>"
        f"<td>{r.total_seconds:.1f}</td><td>"
        + (f"{r.measures.release_s:.1f}" if r.measures else "—")
        + f"</td><td>{r.failed_probes}</td><td>{_e(r.run_id)}</td></tr>" for r in runs)
    return ('<table class="events"><tr><th>strategy</th><th>repetition</th><th>role</th>'
            "<th>release</th><th>outcome</th><th>total s</th><th>prepare + roll out s</th>"
            f"<th>failed probes</th><th>run id</th></tr>{rows}</table>")


def render_release(report, *, machine: dict | None = None,
                   stack_template: Path | None = None) -> str:
    """The report of one `deployer release` run (a :class:`deployer.report.release.ReleaseReport`).

    ``stack_template`` is the strategy's stack template, for the floor (none without it).
    """
    view = StrategyView.from_report(report, stack_template)
    r = report
    subtitle = (f"{_report_badge(r)} {_e(r.from_release)} → {_e(r.release)} "
                f"via {_e(r.strategy)} on {_e(r.target)} · {r.total_seconds:.1f} s")
    settings = [("release", r.release), ("from release", r.from_release),
                ("strategy", r.strategy), ("target", r.target), ("load balancer", r.url),
                ("probes per second", f"{r.hz:g}"), ("started", _started(r.started_at)),
                ("run id", r.run_id)]
    return _page(f"deployer release: {r.release} via {r.strategy}", subtitle,
                 settings + _machine_rows(machine), [view], [])


def write_html(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
