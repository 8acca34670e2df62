"""Kubernetes: the closed list of `kube` verbs, `kube_wait`'s rollout status, and their guardrails.

I/O only, through the official `kubernetes` client with one `ApiClient` per worker (never the
module-global configuration). Every verb checks remote state first, so a retried activity never
repeats a disruption, and every failure is a `KubeError` saying whether a retry can help.
"""
