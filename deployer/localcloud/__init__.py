"""The embedded local cloud: the AWS parts the strategies use, rebuilt on loopback."""
