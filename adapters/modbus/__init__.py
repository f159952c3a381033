"""Modbus TCP / RTU source type. See README.md beside this file.

Module map: ``config`` (the config models), ``spec`` (the registry entry), ``build``
(adapters from configs, and the checks across sources), ``decoder`` (registers ->
values), ``encoder`` (the inverse, for simulators and tests), ``planner`` (points ->
fewest read requests), ``transport`` (which connection a source uses), ``bus`` (one
serialized connection with reconnect), ``device`` (a device's timeout/backoff state),
``points`` (a point compiled for the hot path), ``poller`` (schedule and one poll
cycle), ``adapter`` (the SourceAdapter), ``metrics`` (Prometheus collectors).
"""
