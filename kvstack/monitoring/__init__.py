"""Monitoring as code: Prometheus rules (``kvstack.monitoring.alerts``, the repo's ``alerts/``) and Grafana
dashboards (``kvstack.monitoring.dashboards``, the repo's ``dashboards/``)."""
