"""Storage sizes as Kubernetes writes them (`10Gi`, `500M`, `1.5Ti`): parsed with the client's own
parser, computed in whole bytes, written back in the largest binary unit that keeps them exact."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity

#: The client's parser (every suffix, exponents, decimals), typed for mypy.
_parse: Callable[[str], Decimal] = parse_quantity

_BINARY = (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def to_bytes(quantity: str) -> int:
    """`10Gi` → 10737418240; ValueError for what is not a quantity."""
    value = _parse(quantity)
    if value < 0:
        raise ValueError(f"{quantity!r} is negative")
    return math.ceil(value)


def format_bytes(size: int) -> str:
    """Bytes as a quantity: `Ti`/`Gi`/`Mi`/`Ki` when exact, else plain bytes."""
    for suffix, unit in _BINARY:
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def grown(current: str, factor: float, cap: str) -> int:
    """`current * factor` rounded up to a whole MiB, at most `cap` (bytes)."""
    mib = 1024**2
    target = math.ceil(Decimal(to_bytes(current)) * Decimal(str(factor)) / mib) * mib
    return min(target, to_bytes(cap))
