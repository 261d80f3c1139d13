"""The run engine: a release run, a comparison, the strategy family, locks, providers.

``engine`` drives one strategy through prepare, roll out and verify with the poller
watching; ``compare`` runs several; ``strategy`` is the plug-in family (strategies import
it, the engine loads them by entry point); ``providers`` picks the cloud adapter. May import
``cloud``, ``measure``, ``report``, ``etherpad``, ``cfn``, ``packer``, ``base`` and, in
``providers`` only, the adapters ``aws`` and ``localcloud``.
"""
