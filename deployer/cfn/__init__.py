"""The CloudFormation template reader: the stacks in ``etherpad/stacks/`` as typed specs.

Shared by ``deployer validate``, the floor and the local cloud, which executes what it
reads. Imports only ``base``.
"""
