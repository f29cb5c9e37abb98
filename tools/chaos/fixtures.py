"""What the faults feed the harness: small reproducers, a recipe, patches, hostile YAML.

The reproducers are ordinary ones (a folder with repro.c and repro.yaml,
found through ``HARNESS_REPRODUCERS``):

- ``chaos_sleep``, ``chaos_quick`` (1 s), ``chaos_long`` (45 s), ``chaos_stop``
  (5 s, a 15 s limit), ``chaos_small`` (1 s, a 1-vCPU guest): write a file on
  the image, then sleep (the run phase lasts as long as the fault needs); CLEAN.
- ``chaos_freeze``: in its first run (vng's boot options name ``run-01``) freezes the
  filesystem and writes to it: a task in D state for good, no oops, no
  end: a hang the guest cannot get out of; later runs are clean.
- ``chaos_release``: DATA_LOSS (an ``@@lost`` line) on kernels whose release
  is at least ``-56`` of Debian 6.1, clean before: a "regression" to bisect
  and a "fix" to prove, without a real bug.
"""

from __future__ import annotations

import uuid
from pathlib import Path

SLEEP_C = r"""// chaos: write a file, then sleep
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
	char p[4096];
	snprintf(p, sizeof p, "%s/chaos", argc > 1 ? argv[1] : ".");
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "chaos\n", 6) != 6 || fsync(fd)) { perror(p); return 1; }
	int n = argc > 2 ? atoi(argv[2]) : 1;
	for (int i = 0; i < n; i++) { printf("chaos: %d/%d\n", i + 1, n); fflush(stdout); sleep(1); }
	return 0;
}
"""

FREEZE_C = r"""// chaos: a hang the guest cannot end (a write to a frozen filesystem), in run-01 only
#include <linux/fs.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
	char cmdline[8192] = "";  /* vng's boot options name the run folder (virtme_chdir=.../run-01) */
	FILE *f = fopen("/proc/cmdline", "r");
	if (!f || !fgets(cmdline, sizeof cmdline, f) || !strstr(cmdline, "/run-01")) {
		printf("chaos: not run-01, no hang\n"); return 0;
	}
	int dir = open(argv[1], O_RDONLY);
	if (dir < 0 || ioctl(dir, FIFREEZE, 0)) { perror("FIFREEZE"); return 1; }
	char p[4096]; snprintf(p, sizeof p, "%s/stuck", argv[1]);
	printf("chaos: writing to a frozen filesystem\n"); fflush(stdout);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	printf("chaos: never here (%d)\n", fd);
	return 0;
}
"""

RELEASE_C = r"""// chaos: "lost data" on Debian 6.1 kernels from 6.1.0-56 on
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
int main(void) {
	struct utsname u;
	if (uname(&u)) { perror("uname"); return 1; }
	int abi = strncmp(u.release, "6.1.0-", 6) == 0 ? atoi(u.release + 6) : 0;
	printf("chaos: release %s (abi %d)\n", u.release, abi);
	if (abi >= 56) printf("@@lost chaos: release %s is past the threshold\n", u.release);
	return 0;
}
"""

IMAGE = "image: {name: chaos-ext4, fs: ext4, size: 32M}\n"
GUEST = 'guest: {cpus: 2, memory: 1G, boot_timeout: 120, cmdline: ["oops=panic"]}\n'

LOST_C = r"""// chaos: "lost data" on every kernel (a bug no fix removes: a proof of it never ends FIXED)
#include <stdio.h>
int main(void) { printf("@@lost chaos: always\n"); return 0; }
"""


SMALL_GUEST = 'guest: {cpus: 1, memory: 512M, boot_timeout: 180, cmdline: ["oops=panic"]}\n'


def _sleeper(seconds: int, timeout: int = 90, guest: str = GUEST) -> tuple[str, str]:
    return SLEEP_C, f'args: ["{{mnt}}", "{seconds}"]\ntimeout: {timeout}\n' + IMAGE + guest + "expect: {titles: []}\n"


SPECS = {
    "chaos_sleep": _sleeper(1),
    "chaos_quick": _sleeper(1),
    "chaos_long": _sleeper(45),
    "chaos_stop": _sleeper(5, timeout=15),  # the run step's budget: 15 s + the driver's 45 s grace
    "chaos_small": _sleeper(1, guest=SMALL_GUEST),  # two at once cost the CPUs of one ordinary guest
    "chaos_lost": (LOST_C, "args: []\ntimeout: 30\nimage: none\n" + GUEST + "expect: {data_loss: true}\n"),
    "chaos_freeze": (FREEZE_C, 'args: ["{mnt}"]\ntimeout: 10\n' + IMAGE + GUEST + "expect: {titles: []}\n"),
    "chaos_release": (RELEASE_C, "args: []\ntimeout: 30\nimage: none\n" + GUEST
                      + 'expect: {data_loss: true, reproduce: ["debian:6.1.0-5[6-9]"], clean: ["debian:6.1.0-5[0-5]"]}\n'),
}

# A big, slow image: mkfs writes every inode table (lazy_itable_init=0) and debugfs marks every
# free block used, so the image phase lasts long enough to be caught.
SLOW_RECIPE = """name: chaos-slow
fs: ext4
size: 3G
mkfs_options: ["-b", "1024", "-N", "1500000", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard"]
tweaks: [mark_free_blocks_used]
check: false
"""

ESCAPING_PATCH = """--- a/../../etc/chaos-escaped
+++ b/../../etc/chaos-escaped
@@ -0,0 +1 @@
+escaped
"""


def one_line_patch(pristine: Path, rel: str = "fs/ext4/inline.c", note: str = "chaos") -> str:
    """A patch adding one comment line at the top of ``rel`` (recompiles one file); a new one each call
    (a token in the comment), so the build it asks for is never in the cache yet."""
    first = (pristine / rel).read_text().splitlines()[0]
    token = uuid.uuid4().hex[:8]
    return (f"--- a/{rel}\n+++ b/{rel}\n@@ -1 +1,2 @@\n+/* harness {note} {token}: one-line change */\n {first}\n")


def billion_laughs(levels: int = 12, width: int = 10) -> str:
    """The YAML bomb: each anchor a list of ``width`` aliases of the one before (width**levels leaves)."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"description: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def write_reproducers(root: Path) -> Path:
    """The chaos reproducers under ``root/reproducers`` (for HARNESS_REPRODUCERS)."""
    base = root / "reproducers"
    for name, (source, body) in SPECS.items():
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "repro.c").write_text(source)
        (folder / "repro.yaml").write_text(f"name: {name}\nsummary: chaos suite fixture\nsource: repro.c\n"
                                           f"kernel: debian:6.1\n{body}")
    return base


def write_matrix(path: Path, reproducers: list[str], kernels: list[str]) -> Path:
    path.write_text("name: chaos\nruns: 1\nkernels: [" + ", ".join(kernels) + "]\nreproducers: ["
                    + ", ".join(reproducers) + "]\n")
    return path
