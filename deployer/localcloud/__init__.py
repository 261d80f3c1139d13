"""The embedded local cloud: the AWS parts the strategies use, on loopback, with state on disk."""
