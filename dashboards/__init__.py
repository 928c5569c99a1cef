"""Grafana dashboards generated with grafana-foundation-sdk and committed as sorted-key JSON."""
