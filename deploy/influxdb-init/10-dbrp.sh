#!/bin/sh
# Runs once, on the first start of the influxdb:2 container (DOCKER_INFLUXDB_INIT_MODE=setup),
# with the influx CLI already configured with the admin token. Maps the InfluxQL database
# "<bucket>" / retention policy "autogen" to the bucket, so InfluxQL clients (Grafana's
# hazardgw dashboards) can read what the gateway writes with the v2 API.
set -eu
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
