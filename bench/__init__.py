"""Post-deploy verification of a live vLLM endpoint (``kvstack verify``). Needs no Pulumi."""
