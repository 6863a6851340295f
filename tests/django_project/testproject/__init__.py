"""Minimal Django project that the gateway's integration tests and benchmarks run against.

It is also an installed app, for its management commands, its login template
and its tests.
"""
