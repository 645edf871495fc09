"""Test and benchmark tooling: synthetic streams, fault injection, loopback servers.

The app never imports this package at run time (a test checks it); tests, ``bench/``
and ``scripts/`` do.
"""
