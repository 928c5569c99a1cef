"""Prometheus recording and alerting rules as code (plain ``groups:``), autoscaling signal queries."""
