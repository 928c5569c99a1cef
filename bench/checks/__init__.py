"""The checks of ``kvstack verify``, one module each: engine, capacity, batching (+ sweep), prefix caching,
latency. Each takes the run context and returns a ``CheckResult``; figures computed from samples are pure
functions beside them so that they can be tested without a server."""
