"""kvstack: run vLLM in production on Kubernetes.

Packages: ``infra`` (Pulumi program and pure manifest builders), ``bench`` (post-deploy verification),
``alerts`` and ``dashboards`` (monitoring as code), ``kvstack.local`` (the local real-vLLM stack).
"""

__version__ = "0.1.0"
