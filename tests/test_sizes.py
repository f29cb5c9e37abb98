"""harness.sizes: one parser; the caller says what a bare number means."""

import pytest

from harness.errors import SpecError
from harness.images import parse_recipe
from harness.kernels.cache import cache_limit
from harness.matrix.pool import memory_bytes
from harness.sizes import parse_size


@pytest.mark.parametrize("text, bytes_", [
    ("30G", 30 << 30), ("512M", 512 << 20), ("1.5k", 1536), ("2MiB", 2 << 20), ("2MB", 2 << 20),
    ("1t", 1 << 40), (" 64 M ", 64 << 20), ("100B", 100), ("100b", 100),
])
def test_suffixes_mean_the_same_to_every_caller(text, bytes_):
    assert parse_size(text, bare="B") == parse_size(text, bare="M") == bytes_


def test_a_bare_number_is_what_the_caller_says():
    assert parse_size("2048", bare="B") == 2048 and parse_size(2048, bare="B") == 2048
    assert parse_size("2048", bare="M") == 2 << 30 and parse_size(2048, bare="M") == 2 << 30
    assert parse_size("1.5", bare="K") == 1536


def test_the_three_callers():
    assert memory_bytes(2048) == 2 << 30 and memory_bytes("1G") == 1 << 30  # QEMU's -m: MiB
    assert cache_limit("2048") == 2048  # the kernel cache: bytes
    assert parse_recipe({"fs": "ext4", "size": 2048}, "r.yaml").size == 2048  # images: bytes


@pytest.mark.parametrize("text", ["lots", "", "12X", "1iB", "-5M", "1e3", True, "5 G B"])
def test_a_bad_size_is_one_line(text):
    with pytest.raises(SpecError) as e:
        parse_size(text, bare="M", what="memory size")
    line = e.value.one_line()
    assert line.startswith(f"memory size {text!r} is not a size") and "a bare number is MiB" in line
    assert "\n" not in str(e.value)


def test_the_caller_must_say_what_a_bare_number_is():
    with pytest.raises(TypeError):
        parse_size("1")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="bare='MiB'"):
        parse_size("1", bare="MiB")
