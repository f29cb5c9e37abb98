"""Rust v0 symbol demangling (``_R...``), enough for kernel stack frames.

Follows RFC 2603 / rustc-demangle's "alternate" form (no crate hashes), e.g.
``_RNvCs1234_7___rustc17rust_begin_unwind`` -> ``__rustc::rust_begin_unwind``.
Anything that is not a well-formed v0 symbol is returned unchanged.
"""

from __future__ import annotations

_BASIC_TYPES = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16",
    "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_",
}
_INT_CONSTS = set("ashlxnitmjyo")
_MAX_DEPTH = 200


class _Invalid(Exception):
    pass


def demangle(symbol: str) -> str:
    """The readable form of a Rust v0 symbol, or ``symbol`` itself."""
    if not symbol.startswith("_R") or len(symbol) < 3 or symbol[2].isdigit():
        return symbol
    try:
        return _Demangler(symbol[2:]).path(in_value=True)
    except (_Invalid, RecursionError, ValueError, UnicodeError):
        return symbol


class _Demangler:
    def __init__(self, sym: str, pos: int = 0, depth: int = 0):
        self.sym, self.pos, self.depth = sym, pos, depth

    # --- lexing ---
    def peek(self) -> str:
        return self.sym[self.pos] if self.pos < len(self.sym) else ""

    def eat(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        ch = self.peek()
        if not ch:
            raise _Invalid
        self.pos += 1
        return ch

    def base62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while not self.eat("_"):
            ch = self.next()
            if ch.isdigit():
                digit = ord(ch) - ord("0")
            elif "a" <= ch <= "z":
                digit = 10 + ord(ch) - ord("a")
            elif "A" <= ch <= "Z":
                digit = 36 + ord(ch) - ord("A")
            else:
                raise _Invalid
            value = value * 62 + digit
        return value + 1

    def optional62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def decimal(self) -> int:
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        digits = self.sym[start:self.pos]
        if not digits or (len(digits) > 1 and digits[0] == "0"):
            raise _Invalid
        return int(digits)

    def ident(self) -> str:
        punycode = self.eat("u")
        length = self.decimal()
        self.eat("_")
        if self.pos + length > len(self.sym):
            raise _Invalid
        name = self.sym[self.pos:self.pos + length]
        self.pos += length
        if punycode:
            ascii_part, _, encoded = name.rpartition("_")
            name = (ascii_part + "-" + encoded).encode().decode("punycode")
        return name

    def backref(self, method: str, *args) -> str:
        start = self.pos - 1
        target = self.base62()
        if target >= start or self.depth > _MAX_DEPTH:
            raise _Invalid
        return getattr(_Demangler(self.sym, target, self.depth + 1), method)(*args)

    # --- grammar ---
    def path(self, in_value: bool) -> str:
        tag = self.next()
        if tag == "C":
            self.optional62("s")
            return self.ident()
        if tag == "N":
            namespace = self.next()
            prefix = self.path(in_value)
            disambiguator = self.optional62("s")
            name = self.ident()
            if namespace.isupper():
                kind = {"C": "closure", "S": "shim"}.get(namespace, namespace)
                return f"{prefix}::{{{kind}{':' + name if name else ''}#{disambiguator}}}"
            return f"{prefix}::{name}" if name else prefix
        if tag in "MX":
            self.optional62("s")
            self.path(in_value=False)  # the impl's own path is not shown
        if tag in "MXY":
            self_type = self.type()
            if tag == "M":
                return f"<{self_type}>"
            return f"<{self_type} as {self.path(in_value=False)}>"
        if tag == "I":
            prefix = self.path(in_value)
            args = []
            while not self.eat("E"):
                args.append(self.generic_arg())
            return f"{prefix}{'::' if in_value else ''}<{', '.join(args)}>"
        if tag == "B":
            return self.backref("path", in_value)
        raise _Invalid

    def generic_arg(self) -> str:
        if self.eat("L"):
            self.base62()
            return "'_"
        if self.eat("K"):
            return self.const()
        return self.type()

    def type(self) -> str:
        tag = self.next()
        if tag in _BASIC_TYPES:
            return _BASIC_TYPES[tag]
        if tag in "RQ":
            if self.eat("L"):
                self.base62()
            return ("&" if tag == "R" else "&mut ") + self.type()
        if tag in "PO":
            return ("*const " if tag == "P" else "*mut ") + self.type()
        if tag == "A":
            inner = self.type()
            return f"[{inner}; {self.const()}]"
        if tag == "S":
            return f"[{self.type()}]"
        if tag == "T":
            items = []
            while not self.eat("E"):
                items.append(self.type())
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if tag == "F":
            return self.fn_sig()
        if tag == "D":
            return self.dyn_bounds()
        if tag == "B":
            return self.backref("type")
        self.pos -= 1
        return self.path(in_value=False)

    def fn_sig(self) -> str:
        if self.eat("G"):
            self.base62()
        prefix = "unsafe " if self.eat("U") else ""
        if self.eat("K"):
            abi = "C" if self.eat("C") else self.ident().replace("_", "-")
            prefix += f'extern "{abi}" '
        params = []
        while not self.eat("E"):
            params.append(self.type())
        ret = self.type()
        return f"{prefix}fn({', '.join(params)})" + ("" if ret == "()" else f" -> {ret}")

    def dyn_bounds(self) -> str:
        if self.eat("G"):
            self.base62()
        traits = []
        while not self.eat("E"):
            trait = self.path(in_value=False)
            bindings = []
            while self.eat("p"):
                name = self.ident()
                bindings.append(f"{name} = {self.type()}")
            if bindings:
                trait = (trait[:-1] + ", " if trait.endswith(">") else trait + "<") + ", ".join(bindings) + ">"
            traits.append(trait)
        if not self.eat("L"):
            raise _Invalid
        self.base62()
        return "dyn " + " + ".join(traits)

    def const(self) -> str:
        if self.eat("B"):
            return self.backref("const")
        kind = self.next()
        if kind == "p":
            return "_"
        if kind in _INT_CONSTS or kind in "bc":
            negative = kind in _INT_CONSTS and self.eat("n")
            start = self.pos
            while self.peek() and self.peek() != "_":
                self.pos += 1
            value = int(self.sym[start:self.pos] or "0", 16)
            self.next()
            if kind == "b":
                return "true" if value else "false"
            if kind == "c":
                return repr(chr(value))
            return str(-value if negative else value)
        raise _Invalid
