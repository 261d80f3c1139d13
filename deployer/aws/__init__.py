"""The AWS adapter of the cloud port: boto3 and the packer binary.

The only package of deployer that imports boto3 or botocore. Every call goes through
:mod:`deployer.aws.errors`, which turns botocore's exceptions into the project's own.
"""
