"""A kernel recipe: what to build (source, patch stack, kconfig fragments) and how its guests boot.

Every command takes its kernel from here: a spec's variant
(``harness.repro.spec.Spec.recipe``), a ``--base SOURCE`` with the default
fragments (``Recipe.of_source``), a build by name in the cache, and any of
those with ``--patch`` operations on top (``Recipe.patched``), under the one
naming rule (``patched_name``): ``VARIANT+<8 hex of the stack>`` on a named
variant, ``patched-<8 hex>`` on a plain source, so that a patched build never
answers for the unpatched one's name in the kernel cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import SpecError
from harness.kernels import patches as patchlib
from harness.kernels.build import Variant, build
from harness.kernels.kernel import SOURCES, Kernel, split_name
from harness.kernels.patches import PatchOp, load_patches

Progress = Callable[[str], None]


def patched_name(name: str, ops: Sequence[PatchOp]) -> str:
    """The name of ``name``'s build with ``ops`` applied after its own stack."""
    tag = patchlib.digest(ops)[:8]
    return f"{name}+{tag}" if name != "default" else f"patched-{tag}"


def load_ops(args: Sequence[str]) -> list[PatchOp]:
    """Every ``--patch`` argument's stack, in order (a file, a series, an mbox, ``revert:P``)."""
    return [op for arg in args for op in load_patches(arg)]


def absolute(arg: str) -> str:
    """A ``--patch`` argument with its path made absolute (``revert:`` kept): what a resume reloads."""
    prefix = "revert:" if arg.startswith("revert:") else ""
    return prefix + str(Path(arg.removeprefix("revert:")).expanduser().resolve())


def buildable(source: str) -> None:
    """Raise SpecError unless ``source`` is a kernel the harness builds from source."""
    kind, _ = split_name(source)
    if not hasattr(SOURCES.select(kind), "checkout"):
        raise SpecError(f"{source} is a prebuilt kernel: patches need a source to build "
                        "(--base debian-src:VERSION, git:PATH@REV or dir:PATH)")


@dataclass(frozen=True)
class Recipe:
    """One kernel to build (a ``harness.kernels.build.Variant``) and the boot options its guests need."""

    variant: Variant
    cmdline: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.variant.kernel_name

    @classmethod
    def of_source(cls, source: str) -> Recipe:
        """A kernel source with the default fragments (``--base SOURCE``)."""
        buildable(source)
        return cls(Variant(source=source))

    @classmethod
    def of_kernel(cls, kernel: Kernel) -> Recipe:
        """The recipe a cached kernel's name stands for (its name only: the build is done)."""
        return cls(Variant(source=kernel.extra.get("source") or kernel.name,
                           name=kernel.extra.get("variant") or "default"))

    def patched(self, ops: Sequence[PatchOp]) -> Recipe:
        """This recipe with ``ops`` applied after its own stack (itself when there are none)."""
        if not ops:
            return self
        v = self.variant
        return Recipe(replace(v, name=patched_name(v.name, ops), patches=v.patches + tuple(ops)), self.cmdline)

    def describe(self) -> str:
        v = self.variant
        stack = ", ".join(op.describe() for op in v.patches) or "no patches"
        kconfig = "+".join(Path(f).stem if "/" in f else f for f in v.fragments)
        boot = f" · boot {' '.join(self.cmdline)}" if self.cmdline else ""
        return f"{v.source} · {stack} · kconfig {kconfig}{boot}"

    def build(self, *, progress: Progress | None = None) -> Kernel:
        return build(self.variant, progress=progress)
