"""Kubernetes quantities: parsing, integer conversions (rounding up) and canonical formatting."""

from decimal import Decimal

import pytest

from pymaster.api.quantity import cpu_millis, format_bytes, format_cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        ("250m", Decimal("0.25")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),  # parses; validation rejects it where it must not be negative
        ("100n", Decimal("1e-7")),
        ("100u", Decimal("1e-4")),
        ("1k", Decimal(1000)),
        ("1M", Decimal(10**6)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),  # a lone E is the exa suffix
        ("1Ki", Decimal(1024)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Ti", Decimal(2**40)),
        ("1Pi", Decimal(2**50)),
        ("7Ei", Decimal(7 * 2**60)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1e+3", Decimal(1000)),
        ("1e-3", Decimal("0.001")),
        ("0.1n", Decimal("1e-9")),  # finer than a nano rounds up
        ("1e-999999999", Decimal("1e-9")),
        ("0e999999999", Decimal(0)),
        ("9223372036854775807", Decimal(2**63 - 1)),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "abc",
        "1.2.3",
        "1..2",
        ".",
        "-",
        "1K",
        "1e",
        "e3",
        "1Ki1",
        "1 Mi",
        "1mi",
        "1KiB",
        "0x10",
        "١",  # an Arabic-Indic digit: \d would accept it
        "9223372036854775808",
        "1e19",
        "8Ei",
        "1e99999999999999999999999",
    ],
)
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_parse_quantity_rejects_non_strings():
    with pytest.raises(ValueError):
        parse_quantity(1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("250m", 250),
        ("1", 1000),
        ("0.1", 100),
        ("1.5", 1500),
        ("2", 2000),
        ("0", 0),
        ("0.1m", 1),
        ("1e-3", 1),
        ("100u", 1),
        ("1k", 1_000_000),
    ],
)
def test_cpu_millis(text, millis):
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("64Mi", 64 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1.5Gi", 1610612736),
        ("1e3", 1000),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        ("123Mi", 128974848),
        ("0.5", 1),
        ("1m", 1),
    ],
)
def test_memory_bytes(text, n):
    assert memory_bytes(text) == n


@pytest.mark.parametrize(("func", "text"), [(cpu_millis, "1.2.3"), (memory_bytes, "lots")])
def test_conversions_reject_bad_quantities(func, text):
    with pytest.raises(ValueError):
        func(text)


@pytest.mark.parametrize(
    ("millis", "text"), [(250, "250m"), (2000, "2"), (0, "0"), (1500, "1500m"), (1, "1m"), (1000, "1")]
)
def test_format_cpu_millis(millis, text):
    assert format_cpu_millis(millis) == text
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (1, "1"),
        (1000, "1000"),
        (1024, "1Ki"),
        (1536, "1536"),
        (1536 * 1024, "1536Ki"),
        (64 * 2**20, "64Mi"),
        (2 * 2**30, "2Gi"),
        (3 * 2**40, "3Ti"),
        (2**50, "1Pi"),
        (2**60, "1Ei"),
        (2**70, "1024Ei"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text
    if n < 2**63:
        assert memory_bytes(text) == n
