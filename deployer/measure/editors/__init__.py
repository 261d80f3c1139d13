"""Editors and their data: what Etherpad's users live through a release (issue 14).

* :class:`EditorsSimulator` — N editors on M pads through the load balancer, each a
  long-lived socket.io session typing unique marks, reconnecting as Etherpad's pad.js does;
* :class:`DataCheck` — pads seeded before the rollout, read back after it from the load
  balancer and every live instance;
* :func:`summarize` — the editors' aggregate (:class:`EditorsSummary`) for a report;
  :class:`DataReport` is the data check's.

Typical use by the engine::

    editors = EditorsSimulator(lb_url, editors=6, pads=3)
    check = DataCheck(lb_url, api_key)
    check.seed(editors.pads + extra_pads)   # before the editors open them
    editors.start().wait_ready(30)
    ...  # the rollout
    records = editors.stop()
    data = check.verify(editors.acknowledged(), instance_urls)
    summary = summarize(records, data.lost_marks)
"""

from deployer.measure.editors.datacheck import DataCheck, EtherpadApi, judge, seed_text
from deployer.measure.editors.driver import ensure_driver
from deployer.measure.editors.models import (
    DataReport,
    EditorRecord,
    EditorsSummary,
    ReconnectFigures,
    Span,
    Window,
    summarize,
)
from deployer.measure.editors.simulator import EditorsSimulator, build_records

__all__ = ["DataCheck", "DataReport", "EditorRecord", "EditorsSimulator", "EditorsSummary",
           "EtherpadApi", "ReconnectFigures", "Span", "Window", "build_records",
           "ensure_driver", "judge", "seed_text", "summarize"]
