"""One blueprint per resource, each a thin layer over the data plane, registry and broker."""
