"""deployer: release Etherpad with zero downtime, and prove it."""

__version__ = "0.1.0"
