"""The command line: typer commands that turn options into a run and call the core.

The only package that imports typer; with ``report`` and the live view, the only one that
prints. Imports go one way: ``cli`` may import every other package, and none imports it.
"""
