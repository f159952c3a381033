"""Grafana dashboards as code for a hazardgw site: ``hazardgw grafana export|push`` (see README.md)."""
