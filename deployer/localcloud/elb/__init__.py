"""Elastic Load Balancing, local: the load balancer proxy and its target groups' health."""
