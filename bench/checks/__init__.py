"""The checks of ``kvstack verify``, one module each: engine, capacity, batching (+ sweep), prefix caching,
latency. Each module defines a ``Check`` (``bench.checks.pipeline``): an async ``measure`` that returns
typed figures (``bench.figures``) and a pure ``judge`` of those figures, testable without a server."""
