"""The contract layer: what kvstack reads from vLLM, Prometheus and Kubernetes, written once.

``metrics`` (vLLM's metric catalogue: current and removed names, types, labels), ``router`` (vllm-router's
metric catalogue), ``signals`` (vLLM's and the router's signals as PromQL), ``promql`` (building and
reading PromQL), ``kube`` (kube-state-metrics series and scrape labels), ``exposition`` (reading a
``/metrics`` text), ``types`` (Kubernetes names, Prometheus durations) and ``yaml_text`` (the YAML form
of the documents we hand over). It imports nothing else of kvstack's; everything else may import it
(docs/architecture.md, enforced by import-linter).
"""
