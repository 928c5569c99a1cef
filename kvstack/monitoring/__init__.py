"""Monitoring as code: Prometheus rules (``kvstack.monitoring.alerts``, the repo's ``alerts/``), Grafana
dashboards (``kvstack.monitoring.dashboards``, the repo's ``dashboards/``), the inventory of every
expression they ship (``shipped``) and the live proof on a Prometheus (``live_check``). Alerts and
dashboards do not import each other; both read ``kvstack.contract``."""
