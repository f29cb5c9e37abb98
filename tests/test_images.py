import subprocess
from pathlib import Path

import pytest

from harness import images
from harness.errors import SpecError, UnknownName
from harness.images import FileEntry, free_ranges, load_recipe, parse_recipe, xfs_protofile


def test_recipe_sizes_count_bytes():
    def size(value):
        return parse_recipe({"fs": "ext4", "size": value}, "r.yaml").size

    assert size("64M") == 64 << 20 and size("1g") == 1 << 30
    assert size(4096) == 4096 and size("4096") == 4096  # a bare number is bytes
    with pytest.raises(SpecError, match="r.yaml: size 'lots' is not a size"):
        size("lots")


def test_recipe_errors_name_file_and_key():
    with pytest.raises(SpecError, match=r"r.yaml: unknown key\(s\) colour"):
        parse_recipe({"fs": "ext4", "size": "8M", "colour": "blue"}, "r.yaml")
    with pytest.raises(UnknownName, match="Unknown filesystem 'btrfs'. Available: ext2, ext3, ext4, xfs"):
        parse_recipe({"fs": "btrfs", "size": "8M"}, "r.yaml")
    with pytest.raises(SpecError, match="tweak mark_free_blocks_used does not apply to xfs"):
        parse_recipe({"fs": "xfs", "size": "300M", "tweaks": ["mark_free_blocks_used"]}, "r.yaml")
    with pytest.raises(SpecError, match="must be relative"):
        parse_recipe({"fs": "ext4", "size": "8M", "files": [{"path": "/etc/passwd"}]}, "r.yaml")
    with pytest.raises(SpecError, match="size: is required"):
        parse_recipe({"fs": "ext4"}, "r.yaml")


def test_unknown_recipe_lists_available():
    with pytest.raises(UnknownName, match="Unknown image recipe 'nope'. Available: .*ext4-inline-fullbitmap"):
        load_recipe("nope")


def test_key_changes_with_content():
    a = parse_recipe({"fs": "ext4", "size": "8M"}, "a")
    b = parse_recipe({"fs": "ext4", "size": "8M", "mkfs_options": ["-I", "256"]}, "a")
    assert a.key() == parse_recipe({"fs": "ext4", "size": "8M"}, "other").key()
    assert a.key() != b.key()


def test_free_ranges():
    listing = """Group 0: (Blocks 0-8191)
  Free blocks: 1547-8191
Group 1: (Blocks 8192-16383)
  Free blocks: 8200, 9000-9001
Group 2: (Blocks 16384-16385)
"""
    listing += "  Free blocks: \n"  # dumpe2fs leaves a trailing space when a group has none
    assert free_ranges(listing) == [(1547, 6645), (8200, 1), (9000, 2)]


def test_xfs_protofile(tmp_path):
    text = xfs_protofile(tmp_path, (FileEntry("a", "x"), FileEntry("d/b", "y", 0o600)))
    lines = text.splitlines()
    assert lines[:3] == ["/dev/null", "0 0", "d--755 0 0"]
    assert f"a ---644 0 0 {tmp_path / 'a'}" in lines
    assert "d d--755 0 0" in lines and f"b ---600 0 0 {tmp_path / 'd/b'}" in lines
    assert lines[-1] == "$"


def _dumpe2fs(image: Path) -> str:
    return subprocess.run(["dumpe2fs", str(image)], capture_output=True, text=True, check=True).stdout


def test_real_ext4_image_with_full_bitmaps_and_a_file(tmp_path):
    recipe = parse_recipe(
        {
            "fs": "ext4",
            "size": "16M",
            "mkfs_options": ["-O", "inline_data", "-I", "256"],
            "files": [{"path": "small", "content": "0123456789abcdef"}],
            "tweaks": ["mark_free_blocks_used"],
        },
        "t",
    )
    image = images.build(recipe)
    listing = _dumpe2fs(image)
    # the descriptors still count free blocks, the bitmaps have none
    assert "Free blocks: " in listing and free_ranges(listing) == []
    counted = [int(x) for x in __import__("re").findall(r"(\d+) free blocks,", listing)]
    assert sum(counted) > 1000
    stat = subprocess.run(["debugfs", "-R", "stat small", str(image)], capture_output=True, text=True).stdout
    assert "Size: 16" in stat and "Size of inline data: 60" in stat
    # cached: the same recipe gives the same file without rebuilding
    mtime = image.stat().st_mtime_ns
    assert images.build(recipe) == image and image.stat().st_mtime_ns == mtime
    copy = images.fresh_copy(image, tmp_path / "run" / "disk.img")
    assert copy.read_bytes() == image.read_bytes() and copy != image


def test_real_xfs_image_with_files(tmp_path):
    recipe = parse_recipe({"fs": "xfs", "size": "300M", "files": [{"path": "d/f", "content": "hello"}]}, "t")
    image = images.build(recipe)
    out = subprocess.run(["xfs_db", "-r", "-c", "ls /d", str(image)], capture_output=True, text=True).stdout
    assert " f" in out or "f\n" in out
