"""One module per ``kvstack:<section>`` of the stack file. A section validates what it holds by itself;
rules that span sections live in :mod:`kvstack.infra.config.checks`."""
