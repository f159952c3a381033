"""Tag lists (位号表) in and out of a site config: ``hazardgw tags export|import|template``."""
