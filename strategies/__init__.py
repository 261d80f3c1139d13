"""The built-in strategies, registered through the ``deployer.strategies`` entry-point group."""
