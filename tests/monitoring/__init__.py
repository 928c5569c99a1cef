"""Monitoring as code: promtool, generators, metric names, and the live PromQL proof."""
