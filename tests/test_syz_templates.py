"""The syzkaller environment's shell lives in template files (harness/guest/templates/syz-*.sh), one style.

The rendered lines themselves are pinned by tests/golden/syzkaller (test_syzkaller.py); these check the
templates and what the module passes them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.guest import protocol
from harness.repro import syzkaller as syz

ROOT = Path(__file__).resolve().parent.parent
ENV = syz.GuestEnvironment(modules=("loop",), loop_devices=8, filesystems=("ext4",), features=("tun",))


@pytest.mark.parametrize("name", sorted(syz._PLACEHOLDERS))
def test_each_template_takes_exactly_what_the_module_gives(name):
    text = (protocol.TEMPLATES / f"syz-{name}.sh").read_text()
    assert set(re.findall(r"@([A-Z][A-Z0-9_]*)@", text)) == set(syz._PLACEHOLDERS[name])
    lines = syz._template(name, ENV, "/dev", "/sys", "/proc")
    assert lines and not [ln for ln in lines if re.search(r"@[A-Z][A-Z0-9_]*@", ln)]


def test_every_syz_template_is_used_and_no_shell_function_is_left_in_python():
    on_disk = {p.name.removeprefix("syz-").removesuffix(".sh") for p in protocol.TEMPLATES.glob("syz-*.sh")}
    assert on_disk == set(syz._PLACEHOLDERS)
    source = (ROOT / "harness/repro/syzkaller.py").read_text()
    assert not re.search(r"^\s*harness_syz_\w+\(\) \{", source, re.M)  # function bodies live in the templates
    setup, teardown = syz.setup_lines(ENV), syz.teardown_lines(ENV)
    assert setup[-1] == f"step {syz.SETUP_STEP} 0 harness_syz_setup || exit 0"
    assert teardown[0].startswith("# --- syzkaller environment") and teardown[-1].endswith("harness_syz_cleanup")
    assert "harness_syz_cleanup() {" in teardown and "harness_syz_nap() {  # harness_syz_nap SECONDS: sleep without starting a program" in setup
