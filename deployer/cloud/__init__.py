"""The cloud port: the few verbs strategies call, and the types the adapters return.

Two adapters implement it: ``deployer.aws`` (boto3 and the packer binary) and
``deployer.localcloud`` (the embedded cloud). Imports only ``base``.
"""
