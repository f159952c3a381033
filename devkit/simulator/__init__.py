"""The plant simulator: plays a site config on simulated devices, one module per source type."""
