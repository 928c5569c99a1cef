"""The vLLM workload: Deployment (and its args), Service, PVC, PDB, NetworkPolicy, Namespace, Secrets."""

from __future__ import annotations

import math
from typing import Any

from kvstack.contract.scale_out import SCALE_OUT_FLAG
from kvstack.infra.config import ExistingSecret, StackConfig
from kvstack.infra.config.sections.router import engine_scale_out, router_enabled
from kvstack.infra.drain import shutdown_timeout_seconds
from kvstack.infra.manifests.names import (
    CONTAINER,
    PORT_NAME,
    common_labels,
    names_of,
    router_selector_labels,
    selector_labels,
)

HEALTH_PATH = "/health"
API_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/metrics", "/health")
SHM_MOUNT = "/dev/shm"
TMP_MOUNT = "/tmp"
RUN_AS_USER_NAME = "vllm"
HF_TOKEN_KEY = "token"
API_KEY_KEY = "api-key"


def _meta(config: StackConfig, name: str, *, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace or config.namespace,
        "labels": common_labels(config),
    }
    meta.update(extra)
    return meta


def model_argument(config: StackConfig) -> str:
    """What ``--model`` gets: the HF id, or a path inside the container as configured."""
    return config.model.id


def vllm_args(config: StackConfig) -> list[str]:
    """The full vLLM server argument list (the image's entrypoint is ``vllm serve``/the API server)."""
    engine, model = config.engine, config.model
    args = [
        "--model",
        model_argument(config),
        "--served-model-name",
        model.served_model_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(engine.port),
        "--max-model-len",
        str(engine.max_model_len),
        "--gpu-memory-utilization",
        f"{engine.gpu_memory_utilization:g}",
        "--max-num-seqs",
        str(engine.max_num_seqs),
        "--tensor-parallel-size",
        str(engine.tensor_parallel_size),
        "--dtype",
        engine.dtype,
        "--kv-cache-dtype",
        engine.kv_cache_dtype,
        "--enable-prefix-caching" if engine.enable_prefix_caching else "--no-enable-prefix-caching",
    ]
    if model.revision:
        args += ["--revision", model.revision]
    if engine.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(engine.max_num_batched_tokens)]
    if engine.block_size is not None:
        args += ["--block-size", str(engine.block_size)]
    if engine.kv_cache_memory_gib is not None:
        args += ["--kv-cache-memory-bytes", str(int(engine.kv_cache_memory_gib * 1024**3))]
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    # on SIGTERM, finish the requests in flight (vLLM's default, 0, aborts them); infra/drain.py
    args += ["--shutdown-timeout", str(drain_seconds(config))]
    if engine_scale_out(config):
        # the render routes a cache_aware router reads token ids from (kvstack:router.engine_scale_out)
        args.append(SCALE_OUT_FLAG)
    return args + list(engine.extra_args)


def drain_seconds(config: StackConfig) -> int:
    """vLLM's ``--shutdown-timeout``: the grace period less the preStop sleep and a margin."""
    rollout = config.rollout
    return shutdown_timeout_seconds(rollout.termination_grace_period_seconds, rollout.pre_stop_sleep_seconds)


def _secret_ref(source: ExistingSecret | Any, default_name: str, default_key: str) -> dict[str, Any]:
    if isinstance(source, ExistingSecret):
        return {"secretKeyRef": {"name": source.existing_secret, "key": source.key}}
    return {"secretKeyRef": {"name": default_name, "key": default_key}}


def _env(config: StackConfig) -> list[dict[str, Any]]:
    names = names_of(config)
    env: list[dict[str, Any]] = [
        # The image may have no passwd entry for run_as_user: torch's getpass.getuser() reads USER/LOGNAME
        # before it falls back to getpwuid(), which raises for an unknown uid.
        {"name": "USER", "value": RUN_AS_USER_NAME},
        {"name": "LOGNAME", "value": RUN_AS_USER_NAME},
        # Every cache goes to a writable volume; the root filesystem stays read-only. Weights (HF_HOME)
        # on the model volume; vLLM's, torch inductor's and Triton's compile caches on the /tmp emptyDir.
        {"name": "HOME", "value": TMP_MOUNT},
        {"name": "HF_HOME", "value": f"{config.storage.mount_path}/hf"},
        {"name": "XDG_CACHE_HOME", "value": f"{TMP_MOUNT}/.cache"},
        {"name": "XDG_CONFIG_HOME", "value": f"{TMP_MOUNT}/.config"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{TMP_MOUNT}/vllm"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{TMP_MOUNT}/torchinductor"},
        {"name": "TRITON_CACHE_DIR", "value": f"{TMP_MOUNT}/triton"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    if config.hf_token is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": _secret_ref(config.hf_token, names.hf_token_secret, HF_TOKEN_KEY),
            }
        )
    if config.api_key is not None:
        # vLLM reads VLLM_API_KEY like --api-key; it guards /v1/*, not /health or /metrics
        env.append(
            {
                "name": "VLLM_API_KEY",
                "valueFrom": _secret_ref(config.api_key, names.api_key_secret, API_KEY_KEY),
            }
        )
    env += [{"name": k, "value": v} for k, v in sorted(config.engine.env.items())]
    return env


def _resources(config: StackConfig) -> dict[str, Any]:
    res, gpu = config.resources, config.gpu
    requests: dict[str, str] = {
        "cpu": res.cpu_request,
        "memory": res.memory_request,
        gpu.resource_name: str(gpu.count),
    }
    limits: dict[str, str] = {gpu.resource_name: str(gpu.count)}
    if res.memory_limit:
        limits["memory"] = res.memory_limit
    if res.cpu_limit:
        limits["cpu"] = res.cpu_limit
    if res.ephemeral_storage_request:
        requests["ephemeral-storage"] = res.ephemeral_storage_request
    return {"requests": requests, "limits": limits}


def _probe(config: StackConfig, *, period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": config.probes.timeout_seconds,
        "failureThreshold": failure_threshold,
        "successThreshold": 1,
    }


def startup_failure_threshold(config: StackConfig) -> int:
    """Enough startup-probe periods to cover the model-load budget."""
    return math.ceil(config.probes.model_load_budget_seconds / config.probes.startup_period_seconds)


def _affinity(config: StackConfig) -> dict[str, Any] | None:
    gpu = config.gpu
    if gpu.product is None:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": gpu.product_label, "operator": "In", "values": [gpu.product]}
                        ]
                    }
                ]
            }
        }
    }


def _tolerations(config: StackConfig) -> list[dict[str, Any]]:
    out = []
    for t in config.gpu.tolerations:
        item: dict[str, Any] = {"operator": t.operator}
        if t.key is not None:
            item["key"] = t.key
        if t.value is not None:
            item["value"] = t.value
        if t.effect is not None:
            item["effect"] = t.effect
        if t.toleration_seconds is not None:
            item["tolerationSeconds"] = t.toleration_seconds
        out.append(item)
    return out


def _volumes(config: StackConfig) -> list[dict[str, Any]]:
    storage = config.storage
    names = names_of(config)
    if storage.mode == "pvc":
        cache: dict[str, Any] = {"persistentVolumeClaim": {"claimName": names.model_cache_claim}}
    elif storage.mode == "existing_claim":
        cache = {"persistentVolumeClaim": {"claimName": storage.claim_name}}
    else:
        cache = {"emptyDir": {"sizeLimit": storage.size}}
    return [
        {"name": "model-cache", **cache},
        # NCCL and the tensor-parallel workers exchange through /dev/shm: give it real memory
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": config.resources.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]


def container_security_context(config: StackConfig) -> dict[str, Any]:
    sec = config.security
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": sec.read_only_root_filesystem,
        "runAsNonRoot": True,
        "runAsUser": sec.run_as_user,
        "runAsGroup": sec.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(config: StackConfig) -> dict[str, Any]:
    names = names_of(config)
    probes, rollout, sec = config.probes, config.rollout, config.security
    replicas = config.scaling.min_replicas if config.autoscaled else rollout.replicas
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.image.reference,
        "imagePullPolicy": config.image.pull_policy,
        "args": vllm_args(config),
        "ports": [{"name": PORT_NAME, "containerPort": config.engine.port, "protocol": "TCP"}],
        "env": _env(config),
        "resources": _resources(config),
        "volumeMounts": [
            {"name": "model-cache", "mountPath": config.storage.mount_path},
            {"name": "shm", "mountPath": SHM_MOUNT},
            {"name": "tmp", "mountPath": TMP_MOUNT},
        ],
        # the model load (download, weights, torch.compile, CUDA graphs) gets its whole budget ...
        "startupProbe": _probe(
            config, period=probes.startup_period_seconds, failure_threshold=startup_failure_threshold(config)
        ),
        # ... then readiness gates traffic and a conservative liveness restarts a dead engine
        "readinessProbe": _probe(
            config,
            period=probes.readiness_period_seconds,
            failure_threshold=probes.readiness_failure_threshold,
        ),
        "livenessProbe": _probe(
            config, period=probes.liveness_period_seconds, failure_threshold=probes.liveness_failure_threshold
        ),
        "lifecycle": {
            # keep serving in-flight requests while endpoints drop the pod
            "preStop": {"exec": {"command": ["/bin/sh", "-c", f"sleep {rollout.pre_stop_sleep_seconds}"]}}
        },
        "securityContext": container_security_context(config),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        # a Service named like the app injects VLLM_PORT=tcp://..., which vLLM reads as its own setting
        "enableServiceLinks": False,
        "automountServiceAccountToken": sec.automount_service_account_token,
        "terminationGracePeriodSeconds": rollout.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": sec.run_as_user,
            "runAsGroup": sec.run_as_group,
            "fsGroup": sec.fs_group,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": _volumes(config),
        "tolerations": _tolerations(config),
    }
    if config.gpu.node_selector:
        pod_spec["nodeSelector"] = dict(config.gpu.node_selector)
    affinity = _affinity(config)
    if affinity:
        pod_spec["affinity"] = affinity
    if config.gpu.runtime_class_name:
        pod_spec["runtimeClassName"] = config.gpu.runtime_class_name
    if sec.service_account_name:
        pod_spec["serviceAccountName"] = sec.service_account_name
    if rollout.priority_class_name:
        pod_spec["priorityClassName"] = rollout.priority_class_name
    if config.image.pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in config.image.pull_secrets]
    pod_labels = {**rollout.pod_labels, **common_labels(config)}
    pod_meta: dict[str, Any] = {"labels": pod_labels}
    if rollout.pod_annotations:
        pod_meta["annotations"] = dict(rollout.pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(config, names.deployment),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            # a rollout may legitimately take the whole model-load budget per pod
            "progressDeadlineSeconds": probes.model_load_budget_seconds + 300,
            "selector": {"matchLabels": selector_labels(config)},
            # GPUs are scarce: by default replace in place (no surge pod waiting for a free GPU)
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": rollout.max_surge, "maxUnavailable": rollout.max_unavailable},
            },
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }


def service(config: StackConfig) -> dict[str, Any]:
    names = names_of(config)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(
            config,
            names.service,
            annotations={"kvstack.dev/paths": ",".join(API_PATHS)},
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(config),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": config.engine.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def pod_disruption_budget(config: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(config, names_of(config).pod_disruption_budget),
        "spec": {
            "maxUnavailable": config.rollout.pdb_max_unavailable,
            "selector": {"matchLabels": selector_labels(config)},
            # a pod stuck loading or crash-looping must not block a node drain
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def persistent_volume_claim(config: StackConfig) -> dict[str, Any] | None:
    storage = config.storage
    if storage.mode != "pvc":
        return None
    spec: dict[str, Any] = {
        "accessModes": [storage.access_mode],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class:
        spec["storageClassName"] = storage.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(config, names_of(config).model_cache_claim),
        "spec": spec,
    }


def network_peer(peer: Any) -> dict[str, Any]:
    """One ``network.allowed_sources`` entry as a NetworkPolicy peer."""
    out: dict[str, Any] = {}
    if peer.cidr is not None:
        block: dict[str, Any] = {"cidr": peer.cidr}
        if peer.except_cidrs:
            block["except"] = list(peer.except_cidrs)
        out["ipBlock"] = block
    if peer.namespace_labels is not None:
        out["namespaceSelector"] = {"matchLabels": dict(peer.namespace_labels)}
    if peer.pod_labels is not None:
        out["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
    return out


def prometheus_peer(config: StackConfig) -> dict[str, Any]:
    """The Prometheus pods (``monitoring.prometheus_*``) as a NetworkPolicy peer."""
    mon = config.monitoring
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": mon.prometheus_namespace}},
        "podSelector": {"matchLabels": dict(mon.prometheus_pod_labels)},
    }


def network_policy(config: StackConfig) -> dict[str, Any] | None:
    """Who reaches the vLLM port: the clients, or only the router pods when the router tier is on (the
    clients then reach the router: :func:`infra.manifests.router.network_policy`); and Prometheus."""
    net = config.network
    if not net.enabled:
        return None
    if router_enabled(config):
        peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": router_selector_labels(config)}}]
    else:
        peers = [network_peer(p) for p in net.allowed_sources] or [{"podSelector": {}}]
    if net.allow_prometheus:
        peers.append(prometheus_peer(config))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(config, names_of(config).network_policy),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(config)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT_NAME}]}],
        },
    }


def namespace(config: StackConfig) -> dict[str, Any] | None:
    if not config.create_namespace:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": config.namespace,
            "labels": {
                **common_labels(config),
                # the vLLM pod meets the restricted Pod Security Standard
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def secret(config: StackConfig, which: str, value: object) -> dict[str, Any]:
    """The Secret the program creates from a Pulumi secret (``which``: hf_token or api_key)."""
    names = names_of(config)
    name, key = (
        (names.hf_token_secret, HF_TOKEN_KEY) if which == "hf_token" else (names.api_key_secret, API_KEY_KEY)
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(config, name),
        "type": "Opaque",
        "stringData": {key: value},
    }


def stack_secrets(config: StackConfig) -> list[str]:
    """Which of hf_token/api_key the program must create as Secrets (the others exist or are unset)."""
    return [
        which
        for which in ("hf_token", "api_key")
        if getattr(config, which) is not None and not isinstance(getattr(config, which), ExistingSecret)
    ]
