"""Reference platform receivers for the uplink profiles (tests, and integrators checking a mapping)."""
