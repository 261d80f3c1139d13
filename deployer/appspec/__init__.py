"""The CodeDeploy appspec.yml reader: files, permissions and lifecycle hooks, typed.

Shared by ``deployer validate`` and the local cloud's CodeDeploy agent, which executes what
it reads. Imports only ``base``.
"""
