"""The backend contract (tests/backend_contract.py) against every real backend, on a real Debian kernel."""

from __future__ import annotations

import os

import pytest
from backend_contract import BackendContract
from test_vm_ssh import _targets, local_sshd  # noqa: F401 (the fixture, for the ssh:NAME target)

from harness import kernels
from harness.guest.backends import select

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def debian_kernel():
    return kernels.resolve("debian:6.1")


class _OnDebian(BackendContract):
    @pytest.fixture
    def kernel(self, vm, debian_kernel):
        return debian_kernel


class TestVng(_OnDebian):
    def make_backend(self):
        return select("vng")


class TestVngSsh(_OnDebian):
    timeout = 120.0

    def make_backend(self):
        return select("vng-ssh:0")


class TestSnapshot(_OnDebian):
    def make_backend(self):
        return select("snapshot")


class TestSshTarget(_OnDebian):
    """This host through a local sshd: a machine of the user's (never crashed, hung or escaped from)."""

    crashes = escapes = False

    @pytest.fixture(autouse=True)
    def _target(self, local_sshd, tmp_path, monkeypatch):  # noqa: F811
        monkeypatch.setenv("HARNESS_TARGETS", str(_targets(tmp_path, local_sshd)))
        assert os.geteuid() == 0

    def make_backend(self):
        return select("ssh:local")
