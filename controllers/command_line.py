"""What the controller commands (``kubeattention collector``, ``kubeattention rebalance``) share
on the command line: the ``--kubeconfig`` flag, the Kubernetes client it names, and the
refusal that lists every configuration problem at once."""

from __future__ import annotations

import argparse
import sys

from kubeapi.api_client import KubeConfigError, api_client

KUBECONFIG_HELP = "kubeconfig file (default: in-cluster config in a pod, else $KUBECONFIG or ~/.kube/config)"


def add_kubeconfig_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, help=KUBECONFIG_HELP)


def core_v1(kubeconfig: str | None, problems: list[str]):
    """A ``CoreV1Api`` from ``kubeconfig`` (or in-cluster config, or the default kubeconfig); None,
    with the reason added to ``problems``, when there is no usable configuration."""
    try:
        api = api_client(kubeconfig)
    except KubeConfigError as e:
        problems.append(str(e))
        return None
    from kubernetes import client

    return client.CoreV1Api(api)


def refuse(command: str, problems: list[str]) -> int:
    """Print every problem under ``kubeattention COMMAND: invalid configuration``; the exit code (2)."""
    print(f"kubeattention {command}: invalid configuration:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 2
