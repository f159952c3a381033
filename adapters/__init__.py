"""Southbound adapters: one package per source type, listed in :mod:`adapters.registry`."""
