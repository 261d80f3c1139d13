"""The instruments: the health poller, which release answered, and what probes mean.

Runs beside a rollout and judges it. Imports ``base`` and the Etherpad facts
(``etherpad.releases``) only, so an instrument never depends on what it measures.
"""
