"""``harness new NAME --from-syzbot ID``: a reproducer folder from a syzbot bug, served by a local dashboard.

The dashboard is a local ``http.server`` answering the URLs of a real bug's
recorded files (tests/data/syzbot/a8068dd81edde0186829/README.md says where
each comes from); ``$HARNESS_SYZBOT_URL`` points the harness at it.  No test
reaches the network.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from harness.errors import SpecError, UnknownName
from harness.repro import scaffold, spec, syzbot

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "syzbot" / "a8068dd81edde0186829"
EXTID = "a8068dd81edde0186829"
BUG_ID = "6dda878e2a4227c99ad925929a0be21278575444"
COMMIT = "1cc3fcf63192dfbf5ac13bc6134ae9120ebdcba6"
ROUTES = {  # (path, sorted query) -> file of the recording
    ("/bug", (("extid", EXTID), ("json", "1"))): "bug.json",
    ("/text", (("tag", "ReproC"), ("x", "15ca0ff4c80000"))): "repro.c",
    ("/text", (("tag", "KernelConfig"), ("x", "157296d36f92ea19"))): "kernel-config.gz",
}
OFFERED = {"debian": ["debian:6.1.0-47", "debian:6.1.0-56", "debian:6.12.117"],
           "debian-src": ["debian-src:6.1.192", "debian-src:6.12.117"]}


class Dashboard(http.server.BaseHTTPRequestHandler):
    """Serves ROUTES from ``files`` (a dict: file name -> bytes, which a test may change)."""

    files: dict[str, bytes] = {}
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        key = (url.path, tuple(sorted(urllib.parse.parse_qsl(url.query))))
        self.seen.append(self.path)
        name = ROUTES.get(key)
        body = self.files.get(name) if name else None
        if body is None:
            self.send_error(404)
            return
        if isinstance(body, int):  # a status code to answer with
            self.send_error(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def recorded() -> dict[str, bytes]:
    return {"bug.json": (DATA / "bug.json").read_bytes(), "repro.c": (DATA / "repro.c").read_bytes(),
            "kernel-config.gz": gzip.decompress((DATA / "kernel-config.gz").read_bytes())}


@pytest.fixture
def dashboard(monkeypatch):
    """The local dashboard's files (edit them to break the bug); $HARNESS_SYZBOT_URL points at it."""
    files = recorded()
    handler = type("Handler", (Dashboard,), {"files": files, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(syzbot.ENV, base)
    yield files
    server.shutdown()
    server.server_close()


def base() -> str:
    return os.environ[syzbot.ENV]


def test_the_bug_becomes_a_folder_that_loads(tmp_path, dashboard, golden):
    folder, lines = scaffold.from_syzbot("ext4_writepages", EXTID, root=tmp_path, debian=[], offered=OFFERED)
    assert (folder / "repro.c").read_bytes() == (DATA / "repro.c").read_bytes()  # verbatim
    assert json.loads((folder / "syzbot.json").read_text())["id"] == BUG_ID
    s = spec.load(str(folder))
    assert s.expect.titles == ("kernel BUG in ext4_writepages",)
    assert s.mode == "syzkaller"
    assert base() + f"/bug?extid={EXTID}" in s.links
    assert f"https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/commit/?id={COMMIT}" in s.links
    assert f"https://syzkaller.appspot.com/bug?id={BUG_ID}" in s.links  # the reproducer's own first line
    fragment = (folder / "syzbot.config").read_text()
    assert "CONFIG_EXT4_FS=y" in fragment and "CONFIG_KASAN=y" in fragment
    assert [v.name for v in s.variants] == ["syzbot"] and s.variants[0].source == "debian-src:6.1.192"
    golden("syzbot/repro.yaml", (folder / "repro.yaml").read_text().replace(base(), "http://DASHBOARD"))
    golden("syzbot/syzbot.config", fragment)
    golden("syzbot/kernels.txt", "\n".join(lines) + "\n")


def test_which_kernels_can_run_it(tmp_path, dashboard):
    _, lines = scaffold.from_syzbot("w", EXTID, root=tmp_path, debian=[], offered=OFFERED)
    assert lines[0] == ("syzbot: crashed on commit 1cc3fcf63192 of "
                        "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git; its .config is for Linux 6.1.15")
    assert lines[1].startswith("prebuilt: debian:6.1.0-56 (the newest Debian 6.1 kernel here; 2 offered)")
    assert lines[2].startswith("source: debian-src:6.1.192 (offered by the apt sources)")
    assert lines[3] == "exact: git:/path/to/your/clone@1cc3fcf63192 (a clone of " \
                       "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git)"
    assert lines[4].startswith("needs: the USB raw-gadget environment syzbot's machines have (CONFIG_USB_RAW_GADGET")
    assert lines[5].startswith("needs: the IEEE 802.15.4 radios")
    assert lines[6].startswith("note: syzbot ran it on arm64")  # the config's architecture
    _, none = scaffold.from_syzbot("n", EXTID, root=tmp_path, debian=[], offered={"debian": ["debian:6.12.117"]})
    assert none[1] == "prebuilt: no Debian 6.1 kernel in the apt sources"
    assert none[2].startswith("source: debian-src:6.1.192 (not in the apt sources here)")


def test_cli_prints_the_folder_and_the_kernels(tmp_path, dashboard, monkeypatch, capsys):
    from harness import cli  # the whole command line: only this test needs it

    monkeypatch.setenv("HARNESS_REPRODUCERS", str(tmp_path))
    monkeypatch.setattr(scaffold, "offered_kernels", lambda: OFFERED)
    assert cli.main(["new", "wp", "--from-syzbot", f"https://syzkaller.appspot.com/bug?extid={EXTID}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(tmp_path / "wp") and out[1].startswith("syzbot: crashed on commit 1cc3fcf63192")
    assert out[-1].startswith("next: harness repro wp")
    assert spec.load(str(tmp_path / "wp")).expect.titles == ("kernel BUG in ext4_writepages",)


def test_an_existing_folder_is_refused_before_any_download(tmp_path, dashboard):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "repro.c").write_text("int main(void){return 0;}\n")
    with pytest.raises(SpecError, match="already holds a reproducer"):
        scaffold.from_syzbot("x", EXTID, root=tmp_path, offered=OFFERED)


@pytest.mark.parametrize("arg, key, value, where", [
    (EXTID, "extid", EXTID, "https://syzkaller.appspot.com"),
    (f"id={BUG_ID}", "id", BUG_ID, "https://syzkaller.appspot.com"),
    (f"https://syzkaller.appspot.com/bug?extid={EXTID}", "extid", EXTID, "https://syzkaller.appspot.com"),
    (f"http://dash.example/bug?id={BUG_ID}&other=1", "id", BUG_ID, "http://dash.example"),
])
def test_bug_references(monkeypatch, arg, key, value, where):
    monkeypatch.delenv(syzbot.ENV, raising=False)
    ref = syzbot.parse_ref(arg)
    assert (ref.key, ref.value, ref.base) == (key, value, where)
    assert ref.json_url == f"{where}/bug?{key}={value}&json=1"


@pytest.mark.parametrize("arg, message", [
    ("not-hex!", r"'not-hex!' is not a syzbot id"),
    ("bug=abcdef12", "give the bug's extid"),
    ("https://syzkaller.appspot.com/upstream", "not a syzbot bug URL"),
])
def test_bad_references(arg, message):
    with pytest.raises(UnknownName, match=message):
        syzbot.parse_ref(arg)


def _bug(**changes) -> bytes:
    data = json.loads((DATA / "bug.json").read_text())
    crash = data["crashes"][0]
    for name, value in changes.items():
        target = crash if name.startswith("crash_") else data
        name = name.removeprefix("crash_").replace("_", "-")
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize("body, message", [
    (b"<html>quota exceeded</html>", r"bug\?extid=a8068dd81edde0186829&json=1: not JSON \(.*starts '<html>quota"),
    (b"[1, 2]", "the JSON is a list, not a bug object"),
    (_bug(version=2), "version is 2: this harness reads version 1"),
    (_bug(title=None), "syzbot bug JSON: title is missing"),
    (_bug(crashes=None), "syzbot bug JSON: crashes is missing"),
    (_bug(crashes="many"), "crashes is not a list of objects"),
    (_bug(crash_c_reproducer=None), r"no crash has a c-reproducer \(a syz reproducer only\)"),
    (_bug(crash_c_reproducer=None, crash_syz_reproducer=None), r"no reproducer at all"),
    (_bug(crash_kernel_source_commit="v6.1.18"), r"crashes\[0\].kernel-source-commit 'v6.1.18' is not a commit"),
    (_bug(crash_kernel_config=42), r"crashes\[0\].kernel-config is int, not a string"),
])
def test_bad_fields_are_one_line_each(tmp_path, dashboard, body, message):
    dashboard["bug.json"] = body
    with pytest.raises(SpecError, match=message) as e:
        scaffold.from_syzbot("b", EXTID, root=tmp_path, offered=OFFERED)
    assert "\n" not in e.value.one_line()
    assert not (tmp_path / "b").exists()


def test_http_errors_name_the_url(tmp_path, dashboard):
    dashboard["repro.c"] = None  # 404
    with pytest.raises(UnknownName, match=r"the C reproducer: http://127.0.0.1:\d+/text\?tag=ReproC&x=15ca0ff4c80000: "
                                          r"not found \(HTTP 404\)"):
        scaffold.from_syzbot("h", EXTID, root=tmp_path, offered=OFFERED)
    dashboard["repro.c"] = 503
    with pytest.raises(syzbot.SyzbotError, match=r"the C reproducer: .*HTTP 503"):
        scaffold.from_syzbot("h", EXTID, root=tmp_path, offered=OFFERED)
    with pytest.raises(UnknownName, match=r"the bug's JSON: .*/bug\?extid=0123456789abcdef0123&json=1: not found"):
        scaffold.from_syzbot("h", "0123456789abcdef0123", root=tmp_path, offered=OFFERED)


def test_an_unreachable_dashboard_is_one_line(tmp_path, monkeypatch):
    import socket  # a port nothing listens on

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(syzbot.ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(syzbot.SyzbotError, match=rf"the bug's JSON: http://127.0.0.1:{port}/bug\?extid=.*refused"):
        scaffold.from_syzbot("u", EXTID, root=tmp_path, offered=OFFERED)


def test_inline_texts_of_older_dashboards_need_no_download(tmp_path, dashboard):
    source = (DATA / "repro.c").read_text()
    dashboard["bug.json"] = _bug(crash_c_reproducer=None, crash_c_reproducer_data=source,
                                 crash_kernel_config_data="# Linux/x86 6.12.30 Kernel Configuration\nCONFIG_EXT4_FS=y\n",
                                 crash_architecture="amd64")
    dashboard["repro.c"] = dashboard["kernel-config.gz"] = 500  # would fail if fetched
    folder, lines = scaffold.from_syzbot("i", EXTID, root=tmp_path, offered=OFFERED, debian=[])
    assert (folder / "repro.c").read_text() == source
    assert spec.load(str(folder)).variants[0].source == "debian-src:6.12.117"
    assert lines[1].startswith("prebuilt: debian:6.12.117") and not any(x.startswith("note:") for x in lines)


@pytest.mark.vm
def test_vm_harness_repro_runs_the_scaffolded_bug(tmp_path, dashboard, vm):
    """``harness repro NAME`` runs the folder: on Debian's 6.1.0-47 the reproducer lacks USB raw-gadget and
    802.15.4 (../shared/syzkaller-repros/INDEX.md, 01) and the verdict says so."""
    scaffold.from_syzbot("wp", EXTID, root=tmp_path / "repros", offered=OFFERED, timeout=120)
    env = {**os.environ, "HARNESS_REPRODUCERS": str(tmp_path / "repros")}
    done = subprocess.run([sys.executable, "-m", "harness", "repro", "wp", "-k", "debian:6.1.0-47", "--json",
                           "--results", str(tmp_path / "results")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=1800)
    assert done.returncode == 7, done.stderr[-2000:]  # INFRA_ERROR: it tested nothing
    (run,) = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    assert run["verdict"] == "INFRA_ERROR" and "USB raw-gadget" in run["detail"], run
