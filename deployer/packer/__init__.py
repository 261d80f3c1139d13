"""The Packer template (HCL2) reader: variables, locals, sources and provisioners.

Shared by the AWS adapter (which runs the real ``packer``), ``validate`` and the local
cloud's image builder. Imports only ``base``.
"""
