"""The Pulumi program and the pure code it is built from (config, manifests, capacity planning)."""
