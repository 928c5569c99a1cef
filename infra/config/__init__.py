"""The stack's one typed config: every environment difference, validated once.

A Pulumi stack file (``Pulumi.<stack>.yaml``) holds structured values under the ``kvstack`` namespace::

    config:
      kvstack:model: {id: meta-llama/Llama-3.1-8B-Instruct, shape: llama-3.1-8b}
      kvstack:engine: {max_model_len: 8192, gpu_memory_utilization: 0.9}
      kvstack:hf_token: {secure: v1:...}        # pulumi config set --secret kvstack:hf_token hf_...

The package, one module per idea (nothing here imports Pulumi):

- :mod:`~kvstack.infra.config.types`: value types (Kubernetes names, quantities, labels, CIDRs, durations);
- :mod:`~kvstack.infra.config.sections`: one module per ``kvstack:<section>``, each validating itself;
- :mod:`~kvstack.infra.config.checks`: rules that span sections (model-aware ones read config.json);
- :mod:`~kvstack.infra.config.stack`: :class:`StackConfig`, whose ``model_validate`` alone refuses every
  bad config;
- :mod:`~kvstack.infra.config.errors` and :mod:`~kvstack.infra.config.parse`: :class:`ConfigError`
  naming the stack file and each field as ``kvstack:<section>.<field>``;
- :mod:`~kvstack.infra.config.stack_file`: reading ``Pulumi.<stack>.yaml`` (duplicate keys and non-UTF-8
  files refused).
"""

from kvstack.infra.config.checks import CHECKS
from kvstack.infra.config.errors import NAMESPACE, ConfigError, Issue, field_path
from kvstack.infra.config.parse import parse_stack_config
from kvstack.infra.config.sections.auth import AuthSpec
from kvstack.infra.config.sections.capacity_floor import CapacitySpec
from kvstack.infra.config.sections.engine import MANAGED_ENV, MANAGED_FLAGS, EngineSpec
from kvstack.infra.config.sections.gpu import KNOWN_GPU_MEMORY_BYTES, GpuSpec, Toleration
from kvstack.infra.config.sections.image import ImageSpec
from kvstack.infra.config.sections.model import ModelSpec
from kvstack.infra.config.sections.monitoring import MonitoringSpec
from kvstack.infra.config.sections.network import NetworkPeer, NetworkSpec
from kvstack.infra.config.sections.probes import ProbeSpec
from kvstack.infra.config.sections.resources import ResourcesSpec
from kvstack.infra.config.sections.rollout import RolloutSpec
from kvstack.infra.config.sections.scaling import (
    KedaFallback,
    ScaleBehavior,
    ScaleDownBehavior,
    ScaleUpBehavior,
    ScalingSpec,
)
from kvstack.infra.config.sections.secrets import SECRET_KEYS, ExistingSecret, SecretSource, StackSecret
from kvstack.infra.config.sections.security import SecuritySpec
from kvstack.infra.config.sections.storage import StorageSpec
from kvstack.infra.config.stack import StackConfig
from kvstack.infra.config.stack_file import StackFile, load_stack, read_stack_file, stack_file_path
from kvstack.infra.config.types import duration_seconds

__all__ = [
    "CHECKS",
    "KNOWN_GPU_MEMORY_BYTES",
    "MANAGED_ENV",
    "MANAGED_FLAGS",
    "NAMESPACE",
    "SECRET_KEYS",
    "AuthSpec",
    "CapacitySpec",
    "ConfigError",
    "EngineSpec",
    "ExistingSecret",
    "GpuSpec",
    "ImageSpec",
    "Issue",
    "KedaFallback",
    "ModelSpec",
    "MonitoringSpec",
    "NetworkPeer",
    "NetworkSpec",
    "ProbeSpec",
    "ResourcesSpec",
    "RolloutSpec",
    "ScaleBehavior",
    "ScaleDownBehavior",
    "ScaleUpBehavior",
    "ScalingSpec",
    "SecretSource",
    "SecuritySpec",
    "StackConfig",
    "StackFile",
    "StackSecret",
    "StorageSpec",
    "Toleration",
    "duration_seconds",
    "field_path",
    "load_stack",
    "parse_stack_config",
    "read_stack_file",
    "stack_file_path",
]
