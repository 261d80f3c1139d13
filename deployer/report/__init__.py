"""What a run leaves behind: the release report (JSON, JUnit, console), figures derived
from it (rollout measures, floors), the compare table, the HTML report, status, history.

Reads reports; never drives a cloud. May import ``measure``, ``cloud`` (types), ``cfn``
(the floor reads stack templates) and ``base``.
"""
