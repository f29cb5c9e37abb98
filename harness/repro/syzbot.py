"""A syzbot bug by its id: the dashboard's JSON view, its C reproducer and kernel ``.config``.

syzbot's dashboard serves every bug page as JSON too:
``BASE/bug?extid=EXTID&json=1`` (``extid``: the id in ``Reported-by:
syzbot+EXTID@...`` and the report mail's dashboard link; ``id=``: the bug's
own hash, which a C reproducer's first line names).  The shape is
syzkaller's ``dashboard/api/api.go`` (``Bug``, ``Crash``, version 1)::

    {"version": 1, "title": "...", "id": "...", "status": "open",
     "crashes": [{"title": "...", "c-reproducer": "/text?tag=ReproC&x=...",
                  "syz-reproducer": "...", "kernel-config": "/text?tag=KernelConfig&x=...",
                  "kernel-source-git": "https://git.kernel.org/...", "kernel-source-commit": "<sha>",
                  "syzkaller-commit": "...", "architecture": "amd64", ...}]}

Links are relative to the dashboard.  Older dashboards put the texts
inline too (``c-reproducer-data``, ``kernel-config-data``): used when
present, no download.  ``fetch`` picks the first crash with a C
reproducer and downloads what it names.  The dashboard is
``$HARNESS_SYZBOT_URL`` (default https://syzkaller.appspot.com; a URL given
as the bug names its own unless the variable is set).  Every fault is one
line naming the field or the URL: a missing or malformed field, a bug
without a C reproducer, an HTTP error.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from harness.errors import HarnessError, SpecError, UnknownName

DEFAULT_URL = "https://syzkaller.appspot.com"
ENV = "HARNESS_SYZBOT_URL"
TIMEOUT = 60  # seconds per request
_ID_RE = re.compile(r"^[0-9a-f]{8,40}$")


class SyzbotError(HarnessError):
    """The dashboard could not be reached or answered with an HTTP error."""


@dataclass(frozen=True)
class BugRef:
    """Which bug, and which dashboard: ``key`` is ``extid`` or ``id``."""

    key: str
    value: str
    base: str

    @property
    def json_url(self) -> str:
        return f"{self.base}/bug?{self.key}={self.value}&json=1"

    @property
    def page_url(self) -> str:
        return f"{self.base}/bug?{self.key}={self.value}"


@dataclass(frozen=True)
class Crash:
    """One crash of the bug: what ran, on which kernel."""

    title: str
    c_reproducer: str  # link (relative to the dashboard) or "" when inline
    kernel_config: str
    kernel_git: str = ""
    kernel_commit: str = ""
    syzkaller_commit: str = ""
    compiler: str = ""
    architecture: str = ""


@dataclass(frozen=True)
class Bug:
    ref: BugRef
    title: str
    id: str
    status: str
    crash: Crash
    source: bytes  # the C reproducer
    config: str  # the kernel .config ("" when the crash has none)
    data: dict  # the JSON as served

    @property
    def commit_link(self) -> str:
        """The kernel commit it crashed on, as a cgit/GitHub link ("" when the JSON names none)."""
        git, commit = self.crash.kernel_git, self.crash.kernel_commit
        if not (git and commit):
            return ""
        if "/log/?id=" in git or "/commit/?id=" in git:  # older dashboards gave the link itself
            return git
        git = git.removesuffix("/")
        if git.startswith("https://github.com/"):
            return f"{git.removesuffix('.git')}/commit/{commit}"
        return f"{git.replace('git://', 'https://', 1)}/commit/?id={commit}"


def parse_ref(arg: str, base: str | None = None) -> BugRef:
    """``EXTID``, ``extid=X``, ``id=X`` or a dashboard URL (``.../bug?extid=X``) -> a BugRef."""
    env = os.environ.get(ENV, "").rstrip("/")
    text = arg.strip()
    if "://" in text:
        url = urllib.parse.urlsplit(text)
        query = urllib.parse.parse_qs(url.query)
        key = next((k for k in ("extid", "id") if query.get(k)), None)
        if key is None or not url.path.rstrip("/").endswith("/bug"):
            raise UnknownName(f"--from-syzbot {arg}: not a syzbot bug URL (give .../bug?extid=ID or the id itself)")
        value = query[key][0]
        base = base or env or f"{url.scheme}://{url.netloc}"
    else:
        key, _, value = text.rpartition("=") if "=" in text else ("extid", "", text)
        if key not in ("extid", "id"):
            raise UnknownName(f"--from-syzbot {arg}: give the bug's extid (hex), extid=ID, id=ID or its URL")
    if not _ID_RE.match(value):
        raise UnknownName(f"--from-syzbot {arg}: {value!r} is not a syzbot id (8 to 40 lowercase hex digits)")
    return BugRef(key, value, (base or env or DEFAULT_URL).rstrip("/"))


def get(url: str, what: str) -> bytes:
    """The body at ``url``; an HTTP error or an unreachable host is one line naming ``what``."""
    request = urllib.request.Request(url, headers={"User-Agent": "kernel-repro-harness"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise UnknownName(f"syzbot: {what}: {url}: not found (HTTP 404): check the id") from None
        raise SyzbotError(f"syzbot: {what}: {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise SyzbotError(f"syzbot: {what}: {url}: {reason} (set ${ENV} for another dashboard)") from None


def _field(data: dict, name: str, where: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise SpecError(f"syzbot bug JSON: {where}{name} is missing")
        return ""
    if not isinstance(value, str):
        raise SpecError(f"syzbot bug JSON: {where}{name} is {type(value).__name__}, not a string")
    return value


def _crash(data: dict, ref: BugRef) -> tuple[Crash, dict]:
    crashes = data.get("crashes")
    if crashes is None:
        raise SpecError(f"syzbot bug JSON: crashes is missing: {ref.page_url} lists no crash")
    if not isinstance(crashes, list) or not all(isinstance(c, dict) for c in crashes):
        raise SpecError("syzbot bug JSON: crashes is not a list of objects")
    with_c = [c for c in crashes if c.get("c-reproducer") or c.get("c-reproducer-data")]
    if not with_c:
        syz = any(c.get("syz-reproducer") for c in crashes)
        raise SpecError(f"syzbot bug JSON: no crash has a c-reproducer "
                        f"({'a syz reproducer only' if syz else 'no reproducer at all'}): nothing to run")
    raw = with_c[0]
    where = f"crashes[{crashes.index(raw)}]."
    crash = Crash(
        title=_field(raw, "title", where, required=False),
        c_reproducer=_field(raw, "c-reproducer", where, required="c-reproducer-data" not in raw),
        kernel_config=_field(raw, "kernel-config", where, required=False),
        kernel_git=_field(raw, "kernel-source-git", where, required=False),
        kernel_commit=_field(raw, "kernel-source-commit", where, required=False),
        syzkaller_commit=_field(raw, "syzkaller-commit", where, required=False),
        compiler=_field(raw, "compiler-description", where, required=False),
        architecture=_field(raw, "architecture", where, required=False),
    )
    if crash.kernel_commit and not re.match(r"^[0-9a-f]{7,40}$", crash.kernel_commit):
        raise SpecError(f"syzbot bug JSON: {where}kernel-source-commit {crash.kernel_commit!r} is not a commit hash")
    return crash, raw


def _text(raw: dict, field: str, ref: BugRef, what: str) -> bytes:
    inline = raw.get(f"{field}-data")
    if isinstance(inline, str) and inline:
        return inline.encode()
    link = raw.get(field) or ""
    return get(urllib.parse.urljoin(ref.base + "/", link), what) if link else b""


def parse_bug(body: bytes, ref: BugRef) -> tuple[dict, Crash, dict]:
    """(the JSON, its crash with a C reproducer, that crash's raw object); SpecError naming a bad field."""
    try:
        data = json.loads(body)
    except ValueError as e:
        head = body[:60].decode(errors="replace").replace("\n", " ")
        raise SpecError(f"syzbot: {ref.json_url}: not JSON ({e.msg} at {e.pos}; starts {head!r})") from None
    if not isinstance(data, dict):
        raise SpecError(f"syzbot: {ref.json_url}: the JSON is a {type(data).__name__}, not a bug object")
    version = data.get("version")
    if version != 1:
        raise SpecError(f"syzbot bug JSON: version is {version!r}: this harness reads version 1")
    _field(data, "title", "")
    crash, raw = _crash(data, ref)
    return data, crash, raw


def fetch(arg: str) -> Bug:
    """The bug ``arg`` names (``parse_ref``), its C reproducer and kernel config, downloaded."""
    ref = parse_ref(arg)
    data, crash, raw = parse_bug(get(ref.json_url, "the bug's JSON"), ref)
    source = _text(raw, "c-reproducer", ref, "the C reproducer")
    if not source.strip():
        raise SpecError(f"syzbot: the C reproducer of {ref.page_url} is empty")
    config = _text(raw, "kernel-config", ref, "the kernel config").decode(errors="replace")
    return Bug(ref, _field(data, "title", ""), _field(data, "id", "", required=False),
               _field(data, "status", "", required=False), crash, source, config, data)


def arch_note(arch: str) -> str | None:
    """What the crash's architecture means for the x86-64 guests here (None: nothing to say)."""
    if arch in ("", "amd64", "x86_64", "x86-64"):
        return None
    return (f"syzbot ran it on {arch}; the guests here are x86-64: it compiles against x86-64 headers here, and "
            f"{arch}-only options of its .config do not carry over")


_CONFIG_ARCH_RE = re.compile(r"^#\s*Linux/(\S+)\s+\S+\s+Kernel Configuration", re.M)


def architecture(bug: Bug) -> str:
    """The crash's architecture: the JSON's, else the ``.config``'s header ("" when neither says)."""
    if bug.crash.architecture:
        return bug.crash.architecture
    m = _CONFIG_ARCH_RE.search(bug.config)
    return m.group(1) if m else ""


def _series(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)[:2])


def runnable(bug: Bug, version: str | None, source: str, offered: dict[str, list[str]],
             needs: tuple[str, ...] = ()) -> list[str]:
    """Which kernels here can run the bug's reproducer, one line each.

    ``version``: the kernel version its ``.config`` was made for; ``source``: the Debian source nearest to
    it; ``offered``: kind -> names, as ``harness kernels`` lists them; ``needs``: what the reproducer exits
    without (``harness.repro.syzkaller``'s fatal features, as "title (CONFIG_...)")."""
    series = _series(version or "")
    dotted = ".".join(map(str, series))
    commit = bug.crash.kernel_commit
    on = f"commit {commit[:12]}" + (f" of {bug.crash.kernel_git}" if bug.crash.kernel_git else "") if commit else \
        "a commit the JSON does not name"
    config = f"its .config is for Linux {version}" if version else "its .config names no version"
    lines = [f"syzbot: crashed on {on}; {config}"]
    prebuilt = [n for n in offered.get("debian", []) if series and _series(n) == series]
    if prebuilt:
        lines.append(f"prebuilt: {prebuilt[-1]} (the newest Debian {dotted} kernel here; {len(prebuilt)} offered): "
                     "no KASAN, no fault injection")
    elif series:
        lines.append(f"prebuilt: no Debian {dotted} kernel in the apt sources")
    built = "offered by the apt sources" if source in offered.get("debian-src", []) else "not in the apt sources here"
    lines.append(f"source: {source} ({built}): the syzbot variant builds it with lean + syzbot.config")
    if commit and bug.crash.kernel_git:
        lines.append(f"exact: git:/path/to/your/clone@{commit[:12]} (a clone of {bug.crash.kernel_git})")
    lines += [f"needs: {need}: it exits 1 without it (add the options to syzbot.config for the syzbot variant)"
              for need in needs]
    if note := arch_note(architecture(bug)):
        lines.append(f"note: {note}")
    return lines
