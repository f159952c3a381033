"""Development kit: everything for tests, the demo and benchmarks, nothing the gateway runs on.

Child-process servers (Mosquitto, influxd, VictoriaMetrics) and a test PKI, the plant
simulator with each source type's simulated devices, the demo, and reference receivers
for the uplink profiles. The runtime (``gateway``, ``adapters``, ``alerting``) never
imports this package; only the ``hazardgw simulate`` and ``hazardgw demo`` commands load
it, and tests/test_layering.py keeps it that way.
"""
