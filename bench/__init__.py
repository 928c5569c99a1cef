"""Post-deploy verification of a live vLLM endpoint (``kvstack verify``). Needs no Pulumi.

Entry points: ``bench.verify.run_verify(config, out_dir) -> VerifyResult`` (code, tests, the demo),
``bench.cli.main(argv) -> int`` / ``python -m kvstack.bench`` (command line; ``kvstack verify`` is the
same parser registered by ``bench.cli.add_parser``), ``bench.capacity.parse_kv_capacity(text,
max_model_len)`` (a ``/metrics`` exposition -> ``KvCapacity``). docs/bench.md describes the checks, the
report and CD wiring.
"""
