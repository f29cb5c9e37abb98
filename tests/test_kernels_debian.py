import pytest

from harness import kernels
from harness.errors import UnknownName
from harness.kernels.debian import name_for, package_for, version_key


def test_package_names():
    assert package_for("6.1.0-47") == "linux-image-6.1.0-47-amd64"
    assert package_for("6.12.117") == "linux-image-6.12.117+deb12-amd64"
    assert name_for("linux-image-6.12.117+deb12-amd64") == "debian:6.12.117"
    assert name_for("linux-image-6.1.0-9-amd64") == "debian:6.1.0-9"
    with pytest.raises(UnknownName, match="harness kernels"):
        package_for("5.10.0-30")


def test_versions_sort_numerically():
    names = ["debian:6.12.100", "debian:6.1.0-9", "debian:6.12.99", "debian:6.1.0-47"]
    assert sorted(names, key=version_key) == ["debian:6.1.0-9", "debian:6.1.0-47", "debian:6.12.99", "debian:6.12.100"]


def test_kernel_names_need_a_kind():
    with pytest.raises(UnknownName, match="is not KIND:NAME"):
        kernels.resolve("6.1.0-47")
    with pytest.raises(UnknownName, match="Unknown kernel source 'fedora'. Available: .*debian"):
        kernels.resolve("fedora:6.1")


def test_apt_download_real_and_failing(tmp_path):
    import shutil

    from harness.errors import KernelError
    from harness.kernels.debian import apt_download

    if shutil.which("apt-get") is None:
        pytest.skip("not a Debian host")
    deb = apt_download("hostname", tmp_path)
    assert deb.suffix == ".deb" and deb.stat().st_size > 1000
    with pytest.raises(KernelError, match="apt-get download no-such-package-xyz failed"):
        apt_download("no-such-package-xyz", tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path)
