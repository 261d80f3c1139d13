"""The foundation every other package stands on: errors, logging, the data dir, assets.

Imports nothing from deployer outside ``base``. Anything here may be used by any package.
"""
