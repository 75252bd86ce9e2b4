"""Kubernetes resource quantities ("250m", "0.5", "64Mi", "1Gi", "1e3"): parsing and formatting.

The grammar is Kubernetes' own::

    quantity  ::= [+-] number suffix
    number    ::= digits | digits "." [digits] | "." digits
    suffix    ::= binarySI (Ki Mi Gi Ti Pi Ei) | decimalSI (n u m "" k M G T P E)
                | ("e" | "E") [+-] digits

Values are exact ``Decimal``s, except that, like Kubernetes, precision finer than a nano is rounded
up. Conversions to an integer (milli-cores, bytes) round up too, so "0.1m" of cpu is 1 milli-core
and "0.5" bytes is 1 byte. Unlike Kubernetes, which
silently caps them, magnitudes above 2^63-1 are rejected: such a value in a manifest is a typo.
"""

from __future__ import annotations

import decimal
import functools
import re

_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

# The exponent alternative comes before the decimal suffixes so that "1E3" is 1000, while a lone
# "E" (no digits after it) still falls through to the exa suffix. [0-9], not \d: no Unicode digits.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))"
)

_MAX = decimal.Decimal(2**63 - 1)
_NANO = decimal.Decimal("1e-9")
# 60 digits hold any accepted value (at most 19 integer digits times 1024^6) far below a nano, and
# rounding up (ceiling) there never changes the later rounding up to a nano or to an integer.
_CONTEXT = decimal.Context(
    prec=60, rounding=decimal.ROUND_CEILING, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN
)
_BINARY_UNITS = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def parse_quantity(s: str) -> decimal.Decimal:
    """Parse a Kubernetes quantity into an exact number.

    Args:
        s: the quantity, e.g. "250m", "1", "0.5", "64Mi", "1Gi", "1G", "1e3". Negative values
            parse (Kubernetes allows them); callers that need a non-negative value check it.

    Returns:
        The value in base units (cores, bytes): "250m" -> 0.25, "1Ki" -> 1024.

    Raises:
        ValueError: ``s`` is not a quantity or its magnitude exceeds 2^63-1.
    """
    if not isinstance(s, str):
        raise ValueError(f"quantity must be a string, not {type(s).__name__}")
    return _parse(s)


# Every pod's requests are parsed at create, in validation and by the scheduler: the same few
# strings ("100m", "128Mi") over and over. Decimals are immutable, so a parsed one can be shared.
@functools.lru_cache(maxsize=4096)
def _parse(s: str) -> decimal.Decimal:
    match = _QUANTITY.fullmatch(s)
    if match is None:
        raise ValueError(f"invalid quantity {s!r}")
    if match["binary"]:
        exponent, multiplier = "0", 1024 ** _BINARY_SI[match["binary"]]
    elif match["exponent"] is not None:
        exponent, multiplier = match["exponent"], 1
    else:
        exponent, multiplier = str(_DECIMAL_SI[match["decimal"]]), 1
    try:
        # Exact whatever the exponent, so the magnitude is checked before any arithmetic and
        # "1e999999999" never becomes a huge integer.
        value = decimal.Decimal(f"{match['number']}e{exponent}")
    except decimal.InvalidOperation:
        raise ValueError(f"quantity {s!r} is out of range") from None
    if value and value.adjusted() > 18:  # at least 10^19 > 2^63-1, before any binary multiplier
        raise ValueError(f"quantity {s!r} is too large")
    value = _CONTEXT.multiply(value, multiplier)
    if abs(value) > _MAX:
        raise ValueError(f"quantity {s!r} is too large")
    if value.as_tuple().exponent < -9:
        # Kubernetes keeps nano precision at most and rounds anything finer up.
        value = value.quantize(_NANO, context=_CONTEXT)
    return value


def _ceil(value: decimal.Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING, context=_CONTEXT))


def cpu_millis(s: str) -> int:
    """Milli-cores of a cpu quantity, rounded up: "250m" -> 250, "1" -> 1000, "0.1" -> 100.

    Raises:
        ValueError: ``s`` is not a quantity.
    """
    return _ceil(_CONTEXT.multiply(parse_quantity(s), 1000))


def memory_bytes(s: str) -> int:
    """Bytes of a memory (or storage) quantity, rounded up: "64Mi" -> 67108864, "1G" -> 10**9.

    Raises:
        ValueError: ``s`` is not a quantity.
    """
    return _ceil(parse_quantity(s))


def format_cpu_millis(m: int) -> str:
    """The canonical cpu quantity for ``m`` milli-cores: 250 -> "250m", 2000 -> "2", 0 -> "0"."""
    if m % 1000 == 0:
        return str(m // 1000)
    return f"{m}m"


def format_bytes(n: int) -> str:
    """The largest whole binary unit for ``n`` bytes: "64Mi", "2Gi"; plain "1536" otherwise."""
    if n == 0:
        return "0"
    unit = ""
    for candidate in _BINARY_UNITS:
        if n % 1024:
            break
        n //= 1024
        unit = candidate
    return f"{n}{unit}"
