"""kvstack: run vLLM in production on Kubernetes.

One import namespace: ``kvstack.infra`` (Pulumi program and pure manifest builders; the repo's ``infra/``),
``kvstack.bench`` (post-deploy verification; ``bench/``), ``kvstack.monitoring`` (rules in ``alerts/``,
dashboards in ``dashboards/``), ``kvstack.local`` (the local real-vLLM stack), ``kvstack.cli`` and
``kvstack.contract`` (what kvstack reads from vLLM, Prometheus and Kubernetes). docs/architecture.md
says what may import what.
"""

__version__ = "0.1.0"
