"""What kvstack reads from Kubernetes through Prometheus: kube-state-metrics series and scrape labels.

kube-state-metrics' series exist only in a cluster that runs it; the local stack has none (the live proof
excuses exactly these).
"""

from __future__ import annotations

# kube-state-metrics, HorizontalPodAutoscaler series (label horizontalpodautoscaler, namespace)
HPA_CURRENT_REPLICAS = "kube_horizontalpodautoscaler_status_current_replicas"
HPA_DESIRED_REPLICAS = "kube_horizontalpodautoscaler_status_desired_replicas"
HPA_MAX_REPLICAS = "kube_horizontalpodautoscaler_spec_max_replicas"
HPA_LABEL = "horizontalpodautoscaler"

KUBE_STATE_METRICS_SERIES: tuple[str, ...] = (HPA_CURRENT_REPLICAS, HPA_DESIRED_REPLICAS, HPA_MAX_REPLICAS)

# Labels every Kubernetes scrape (PodMonitor and ServiceMonitor alike) attaches to a pod's series.
NAMESPACE_LABEL = "namespace"
POD_LABEL = "pod"
