"""kvstack: run vLLM in production on Kubernetes.

One import namespace: ``kvstack.infra`` (Pulumi program and pure manifest builders; the repo's ``infra/``),
``kvstack.bench`` (post-deploy verification; ``bench/``), ``kvstack.monitoring`` (rules in ``alerts/``,
dashboards in ``dashboards/``), ``kvstack.local`` (the local real-vLLM stack) and ``kvstack.cli``.
"""

__version__ = "0.1.0"
