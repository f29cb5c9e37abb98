"""Syzkaller reproducers: detection on the published ones, the guest environment's shell lines
(golden, bash -n, and run for real in private namespaces with tmpfs and loop devices)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from shared_data import SETS

from harness.repro import syzkaller as syz

ROOT = Path(__file__).resolve().parent.parent
SHARED = SETS["syzkaller-repros"].path  # $HARNESS_SYZ_REPROS, default ../shared/syzkaller-repros
GOLDEN = Path(__file__).resolve().parent / "golden" / "syzkaller"
MARK = "@@" + "harness"  # only the guest protocol writes markers

needs_shared = SETS["syzkaller-repros"].mark

# What INDEX.md says each reproducer needs and did: procs, runs until killed, temp dir,
# filesystems, features it exits 1 without, other features it uses.
INDEX = {
    "01-ext4-writepages-inline-v6.1.c": (1, False, True, ("ext4",), {"usb-raw-gadget", "ieee802154"}, set()),
    "02-ext4-fallocate-hung.c": (6, True, True, ("ext4",), set(), {"cgroups"}),
    "04-ext3-swap-boot-lock-two-nondirs.c": (1, False, False, ("ext3",), {"fault-injection"}, set()),
    "05-ext4-find-extent-uaf.c": (4, True, False, ("ext4", "ntfs3"), set(), {"userfaultfd", "sound"}),
    "06-xfs-xlog-cksum-oob.c": (1, False, False, ("xfs",), set(), set()),
    "07-xfs-xlog-cil-commit-nullderef.c": (1, False, True, ("xfs",), {"fault-injection"}, set()),
    "08-btrfs-rm-device-nullderef.c": (1, False, False, ("btrfs",), set(), {"btrfs-control"}),
    "09-reiserfs-fill-super-uaf.c": (1, True, False, ("reiserfs",), set(), set()),
    "10-ocfs2-jbd2-update-sb-log-tail.c": (1, False, False, ("ocfs2",), set(), set()),
}


def _info(name: str) -> syz.SyzInfo:
    info = syz.detect((SHARED / name).read_bytes())
    assert info is not None, f"{name} not recognised as a syzkaller reproducer"
    return info


# --- detection ------------------------------------------------------------------------------


@needs_shared
def test_every_shared_reproducer_is_listed():
    assert sorted(p.name for p in SHARED.glob("*.c")) == sorted(INDEX)


@needs_shared
@pytest.mark.parametrize("name", sorted(INDEX))
def test_detect_shared(name):
    procs, forever, tmpdir, filesystems, fatal, uses = INDEX[name]
    info = _info(name)
    assert info.generated and info.syzkaller and "syz_mount_image" in info.evidence
    assert (info.procs, info.runs_forever, info.tmpdir, info.filesystems) == (procs, forever, tmpdir, filesystems)
    assert set(info.fatal) == fatal
    assert uses | fatal | {"memfd"} <= set(info.features)
    assert info.loop and info.loop_devices == 8  # loop0..loop7 at least, one per proc
    env = syz.environment(info)
    assert env.modules == ("loop",) and env.loop_devices == 8 and env.timeout_is_normal_end is forever
    assert env.boot_options == ("panic_on_warn=1", "oops=panic") and env.scratch == syz.SCRATCH
    assert "memfd" not in env.features  # nothing to probe for it
    assert info.to_dict()["runs_forever"] is forever


@needs_shared
def test_detect_details():
    one = _info("01-ext4-writepages-inline-v6.1.c")
    assert one.arch == "arm64" and one.sandbox == "none" and one.threaded and not one.repeat
    assert one.links == ("https://syzkaller.appspot.com/bug?id=6dda878e2a4227c99ad925929a0be21278575444",)
    assert "generated for arm64" in one.describe()
    two = _info("02-ext4-fallocate-hung.c")
    assert two.repeat and two.repeat_times is None and two.arch == "x86_64"
    assert two.describe().startswith("syzkaller reproducer: 6 procs; runs until killed; mounts ext4 images")
    assert _info("04-ext3-swap-boot-lock-two-nondirs.c").fault_nth == (34,)
    assert _info("07-xfs-xlog-cil-commit-nullderef.c").fault_nth == (6,)
    nine = _info("09-reiserfs-fill-super-uaf.c")  # main calls loop() directly: no procs, forever
    assert nine.procs == 1 and nine.repeat and nine.runs_forever and nine.sandbox is None


def test_seed_reproducers_are_not_syzkaller_and_published_ones_are():
    """Reproducers written here are plain C; the published syzkaller ones (their spec says mode: syzkaller) are
    detected as what they are."""
    sources = sorted(ROOT.glob("reproducers/**/repro.c"))
    assert sources
    published = 0
    for path in sources:
        spec = (path.parent / "repro.yaml").read_text()
        if "mode: syzkaller" in spec:
            published += 1
            assert syz.detect(path.read_bytes()) is not None and syz.is_syzkaller(path.read_text()), path
        else:
            assert syz.detect(path.read_bytes()) is None, path
            assert not syz.is_syzkaller(path.read_text())
    assert published < len(sources)


def test_plain_sources():
    assert syz.detect("int main(void) { return 0; }\n") is None
    # one marker is not enough (a loop() of one's own); with assume, the facts are read anyway
    assert syz.detect("static void loop(void) { for (;;) {} }\nint main(void) { loop(); }") is None
    forced = syz.detect("int main(void) { return 0; }", assume=True)
    assert forced is not None and not forced.generated and forced.procs == 1 and not forced.loop


MODERN = r"""// autogenerated by syzkaller (https://github.com/google/syzkaller)
#define _GNU_SOURCE
static unsigned long long procid;
static void loop(void)
{
  int iter = 0;
  for (iter = 0; iter < 3; iter++) {
    int pid = fork();
    for (;;) { if (waitpid(-1, 0, 0) == pid) break; }
  }
}
void execute_one(void)
{
  // syz_mount_image$xfs arguments: [
  NONFAILING(memcpy((void*)0x200000000040, "xfs\000", 4));
  NONFAILING(memcpy((void*)0x200000000080, "./file0\000", 8));
  NONFAILING(syz_mount_image(/*fs=*/0x200000000040, /*dir=*/0x200000000080, /*flags=*/0, /*opts=*/0, 1, 0, 0));
  NONFAILING(strcpy((char*)0x200000000100, "vfat"));
  syz_mount_image(0x200000000100, 0x200000000080, 0, 0, 0, 0, 0);
}
int main(void)
{
  const char* reason;
  if ((reason = setup_usb())) {
    fprintf(stderr, "reproducer setup failed: USB injection: %s\n", reason);
    exit(1);
  }
  for (procid = 0; procid < 1; procid++) {
    use_temporary_dir();
    do_sandbox_namespace();
  }
  return 0;
}
"""


def test_detect_modern_format():
    info = syz.detect(MODERN)
    assert info.filesystems == ("xfs", "vfat")  # the store at the call's address, then the call comments
    assert info.repeat and info.repeat_times == 3 and not info.runs_forever  # RepeatTimes: it stops
    assert info.sandbox == "namespace" and info.tmpdir
    assert set(info.fatal) == {"usb-raw-gadget", "user-namespaces"}


def test_c_string():
    assert syz.c_string(r"ext4\000") == "ext4"
    assert syz.c_string(r"a\x62c\0d") == "abc"
    assert syz.c_string(r"q\"t\\") == 'q"t\\'


def test_explain_exit():
    info = syz.detect(MODERN)
    assert syz.explain_exit(info, 0) is None and syz.explain_exit(None, 1) is None
    text = syz.explain_exit(info, 1)
    assert text.startswith("exit 1: needs the USB raw-gadget environment syzbot's machines have "
                           "(CONFIG_USB_RAW_GADGET, CONFIG_USB_DUMMY_HCD)")
    log = "harness-syz: has user-namespaces (/proc/self/ns/user)\nharness-syz: lacks usb-raw-gadget: no /dev/raw-gadget\n"
    assert syz.missing_features(log) == ("usb-raw-gadget",)
    assert "user namespaces" not in syz.explain_exit(info, 1, guest_log=log)
    plain = syz.detect("// autogenerated by syzkaller\nint main(void) { return 0; }")
    assert "a setup step fails" in syz.explain_exit(plain, 1)


def test_environment_of_nothing_and_describe():
    env = syz.environment(None)
    assert env.modules == () and env.loop_devices == 0 and not env.timeout_is_normal_end
    many = syz.environment(dataclasses.replace(syz.detect(MODERN), procs=12))
    assert many.loop_devices == 12  # one per proc beyond the 8
    lines = many.describe()
    assert lines[0] == "loop0..loop11 + /dev/loop-control (loop loaded)"
    assert "boot options panic_on_warn=1 oops=panic" in lines
    assert many.to_dict()["loop_devices"] == 12


# --- the shell lines: golden, syntax ----------------------------------------------------------


def _golden(path: Path, text: str) -> None:
    if os.environ.get("HARNESS_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with HARNESS_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{path} differs (HARNESS_GOLDEN=1 rewrites it after review)"


@needs_shared
@pytest.mark.parametrize("name", ["01-ext4-writepages-inline-v6.1.c",  # features with modules to try
                                  "07-xfs-xlog-cil-commit-nullderef.c"])  # fault injection: debugfs
def test_setup_lines_golden(name):
    env = syz.environment(_info(name))
    _golden(GOLDEN / f"setup-{name.split('-', 1)[0]}.sh", "\n".join(syz.setup_lines(env)) + "\n")


@needs_shared
def test_teardown_lines_golden():
    """The teardown depends on the paths only: one golden file for every reproducer."""
    texts = {"\n".join(syz.teardown_lines(syz.environment(_info(name)))) + "\n" for name in INDEX}
    assert len(texts) == 1
    _golden(GOLDEN / "teardown.sh", texts.pop())


@needs_shared
@pytest.mark.parametrize("name", sorted(INDEX))
def test_shell_lines_parse(name, tmp_path):
    env = syz.environment(_info(name))
    setup, teardown = syz.setup_lines(env), syz.teardown_lines(env)
    assert setup[-1] == "step environment 0 harness_syz_setup || exit 0"
    assert teardown[-1] == "step syz-cleanup 0 harness_syz_cleanup"
    text = "\n".join((*setup, *teardown)) + "\n"
    assert MARK not in text and not re.search(r"@[A-Z]+@", text)
    (tmp_path / "s.sh").write_text(text)
    done = subprocess.run(["bash", "-n", str(tmp_path / "s.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for fs in env.filesystems:
        assert f"harness_syz_fs {fs} CONFIG_" in text
    assert syz.setup_lines(None) == () and syz.teardown_lines(None) == ()


def test_no_marker_literal_in_sources():
    for path in (ROOT / "harness/repro/syzkaller.py", ROOT / "harness/repro/scaffold.py",
                 ROOT / "harness/repro/adhoc.py", ROOT / "harness/kernels/syzconfig.py"):
        assert MARK not in path.read_text(), path


# --- the shell lines, run for real --------------------------------------------------------------

ROOTLY = os.geteuid() == 0 and all(shutil.which(p) for p in ("unshare", "setsid", "losetup", "mkfs.ext4", "e2fsck"))
needs_root = pytest.mark.skipif(not ROOTLY, reason="needs root, unshare, setsid, losetup, mkfs.ext4 and e2fsck")

STEP = 'step() { local name=$1 rc; shift 2; echo "STEP $name begin"; "$@"; rc=$?; echo "STEP $name end $rc"; return $rc; }'

# The harness shell (a session leader in its own pid and mount namespaces): its own image
# on a loop device mounted before the setup, a helper started before the setup, another
# listed in HARNESS_KEEP_PIDS; then a "reproducer" that leaves behind what syzkaller's do:
# children in their own process group and session, an orphan, a process in a private mount
# namespace holding a loop mount, nested mounts under its working directory (one on a loop
# device), a loop device attached and never mounted, and processes whose working directory
# keeps the nested mount and the harness's own mount busy.
SCENARIO = r"""
W=$1; CLEAN=$2
@STEP@
HLOOP=$(losetup -f --show "$W/harness.img") || exit 9
echo "HLOOP $HLOOP"
mkdir -p "$W/harness-mnt" && mount "$HLOOP" "$W/harness-mnt" || exit 9
sleep 1000 & echo "OLD $!"
source "$W/setup.sh"
echo "CWD $PWD"
echo "BEFORE $HARNESS_SYZ_LOOPS"
sleep 1001 & HARNESS_KEEP_PIDS=$!; echo "KEEP $!"
(
  sleep 2001 &
  setsid sleep 2002 &
  bash -c 'sleep 2003 & exit 0'
  bash -c 'set -m; sleep 2004 & wait' &
  mkdir -p m1 m3 && mount -t tmpfs t m1 && mkdir m1/m2 || exit 1
  L1=$(losetup -f --show "$W/r1.img") && mount "$L1" m1/m2 && echo "L1 $L1"
  L2=$(losetup -f --show "$W/r2.img") && echo "L2 $L2"
  unshare -m --propagation private bash -c 'L3=$(losetup -f --show "$1/r3.img") && echo "L3 $L3" && mount "$L3" m3 && cd m3 && exec sleep 2008' _ "$W" &
  (cd m1/m2 && exec sleep 2005) &
  (cd "$W/harness-mnt" && exec sleep 2006) &
  exec sleep 2007
) &
for ((i = 0; i < 100; i++)); do
  n=0; for f in /proc/[0-9]*/cmdline; do mapfile -d '' -t v < "$f"; [[ "${v[1]}" == 200[1-8] ]] && n=$((n + 1)); done 2>/dev/null
  [ $n -ge 8 ] && break; sleep 0.1
done
echo "STARTED $n"
cd /
if [ "$CLEAN" = 1 ]; then source "$W/teardown.sh"; fi
for f in /proc/[0-9]*/cmdline; do mapfile -d '' -t v < "$f"; [ "${v[0]}" = sleep ] && echo "ALIVE ${v[1]}"; done 2>/dev/null
while read -r d m _; do case "$m" in "$W"/*) echo "MOUNT $m" ;; esac; done < /proc/self/mounts
for ((i = 0; i < 30; i++)); do  # a loop device of a dying mount namespace lets go when the namespace is gone
  a=; for f in /sys/block/loop*/loop/backing_file; do
    read -r b < "$f" 2>/dev/null; case "$b" in "$W"/r[123].img) a+=" ${b##*/}" ;; esac
  done
  [ -z "$a" ] && break; sleep 0.1
done
echo "ATTACHED$a"
umount "$W/harness-mnt" && echo "UMOUNT ok" || echo "UMOUNT failed"
"""


def _images(work: Path) -> None:
    for name, size in (("harness.img", "16M"), ("r1.img", "8M"), ("r2.img", "1M"), ("r3.img", "8M")):
        subprocess.run(["truncate", "-s", size, str(work / name)], check=True)
        if name != "r2.img":
            subprocess.run(["mkfs.ext4", "-q", "-F", str(work / name)], check=True)


def _detach_all(work: Path) -> None:
    for name in ("harness.img", "r1.img", "r2.img", "r3.img"):
        out = subprocess.run(["losetup", "-j", str(work / name)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], check=False)


def _attached(work: Path, name: str) -> bool:
    return bool(subprocess.run(["losetup", "-j", str(work / name)], capture_output=True, text=True).stdout.strip())


def _run_scenario(tmp_path: Path, clean: bool) -> tuple[str, Path]:
    work = tmp_path / "w"
    work.mkdir()
    _images(work)
    env = dataclasses.replace(syz.environment(syz.detect(MODERN)), scratch=str(work / "scratch"),
                              features=("user-namespaces",), filesystems=("ext4", "nosuchfs"))
    (work / "setup.sh").write_text("\n".join(syz.setup_lines(env)) + "\n")
    (work / "teardown.sh").write_text("\n".join(syz.teardown_lines(env)) + "\n")
    (work / "scenario.sh").write_text(SCENARIO.replace("@STEP@", STEP))
    argv = ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc",
            "bash", "-c", 'setsid bash "$1" "$2" "$3"; echo "RC $?"', "_", str(work / "scenario.sh"), str(work),
            "1" if clean else "0"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        _detach_all(work)  # whatever the scenario left (the namespaces are gone with it)
    return done.stdout + done.stderr, work


@needs_root
def test_teardown_for_real(tmp_path):
    out, work = _run_scenario(tmp_path, clean=True)
    lines = out.splitlines()
    assert "STARTED 8" in lines, out
    assert f"CWD {work}/scratch" in lines  # setup cd'd into the fresh tmpfs
    hloop = next(line.split()[1] for line in lines if line.startswith("HLOOP "))
    assert f" {Path(hloop).name} " in next(x for x in lines if x.startswith("BEFORE"))
    assert f"harness-syz: scratch {work}/scratch (tmpfs): the reproducer's working directory" in lines
    assert "harness-syz: filesystem ext4: available" in lines
    assert any(x.startswith("harness-syz: filesystem nosuchfs: not in this kernel (CONFIG_NOSUCHFS_FS)") for x in lines)
    assert "harness-syz: has user-namespaces (/proc/self/ns/user)" in lines
    assert "STEP environment end 0" in lines and "STEP syz-cleanup end 0" in lines, out
    killed = next(x for x in lines if x.startswith("harness-syz: killed "))
    # 8 sleeps and a job-control bash; that bash may see its job stop and exit first, its job
    # then dies of the SIGHUP an orphaned stopped process group gets: 7 to 9 kills, none left
    assert 7 <= int(killed.split()[2]) <= 9, killed
    alive = sorted(x for x in lines if x.startswith("ALIVE"))
    assert alive == ["ALIVE 1000", "ALIVE 1001"], out  # only the harness's own helpers
    assert not [x for x in lines if x.startswith("MOUNT ") and "/scratch" in x], out  # nothing left under it
    assert any(x.startswith("harness-syz: unmounting 2 mounts under") for x in lines), out
    for tag in ("L1", "L2", "L3"):
        dev = next(x.split()[1] for x in lines if x.startswith(tag + " "))
        assert f"harness-syz: detaching {Path(dev).name} (" in out, (tag, out)
    assert "ATTACHED" in lines, out  # the reproducer's loop devices are free
    assert "UMOUNT ok" in lines, out  # the harness's own image is not busy any more
    assert "harness-syz: cleanup done" in lines
    subprocess.run(["e2fsck", "-fn", str(work / "harness.img")], check=True, capture_output=True)


@needs_root
def test_without_teardown_the_harness_umount_fails(tmp_path):
    """The control: the same leftovers without the teardown break the harness's own umount."""
    out, _ = _run_scenario(tmp_path, clean=False)
    lines = out.splitlines()
    assert "STARTED 8" in lines, out
    assert "UMOUNT failed" in lines, out
    assert len([x for x in lines if x.startswith("ALIVE 200")]) == 8
    assert any(x.startswith("MOUNT ") and x.endswith("/scratch/m1/m2") for x in lines)
    assert "ATTACHED r1.img r2.img r3.img" in lines or "ATTACHED r1.img r3.img r2.img" in lines or any(
        x.startswith("ATTACHED ") and len(x.split()) == 4 for x in lines), out


@needs_root
def test_setup_makes_missing_nodes(tmp_path):
    """With no nodes in the dev directory, setup makes loop-control (c 10:237) and loopN (b 7:N)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    env = dataclasses.replace(syz.environment(syz.detect(MODERN)), scratch=str(tmp_path / "scratch"),
                              loop_devices=10, features=())
    script = "\n".join((STEP, *syz.setup_lines(env, dev=str(dev)), 'echo "T0 $HARNESS_SYZ_T0"')) + "\n"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    made = " ".join(f"loop{n}" for n in range(10))
    assert f"harness-syz: loop0..loop9 and loop-control ready in {dev} (made: loop-control {made})" in done.stdout
    control = (dev / "loop-control").stat()
    assert stat.S_ISCHR(control.st_mode) and (os.major(control.st_rdev), os.minor(control.st_rdev)) == (10, 237)
    for n in range(10):
        st = (dev / f"loop{n}").stat()
        assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, n)
    t0 = int(re.search(r"^T0 (\d+)$", done.stdout, re.M).group(1))
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0 < t0 <= uptime * 100 + 1
    again = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                           capture_output=True, text=True, timeout=60)
    assert "(made: none, all there)" in again.stdout


@needs_root
def test_cleanup_without_setup_does_nothing(tmp_path):
    env = dataclasses.replace(syz.environment(syz.detect(MODERN)), scratch=str(tmp_path / "scratch"))
    script = "\n".join((STEP, "sleep 100 & p=$!", *syz.teardown_lines(env), 'kill -0 "$p" && echo ALIVE; kill "$p"'))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert "harness-syz: no environment was set up: nothing to clean" in done.stdout
    assert "ALIVE" in done.stdout


# --- the published reproducers compile ------------------------------------------------------


@needs_shared
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing")
def test_shared_reproducers_compile(tmp_path):
    started = time.monotonic()
    for name in sorted(INDEX):
        done = subprocess.run(["gcc", "-O2", "-pthread", "-o", str(tmp_path / "a.out"), str(SHARED / name)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    assert time.monotonic() - started < 600
