#!/usr/bin/env python3
"""Fails when the files of a workspace crate, or the crates themselves, import each other in a circle.

An edge A -> B between two files of one crate is any of these in A's code (comments and
string literals are ignored):
  - a `use crate::...`, `use super::...` or `use self::child::...` line that names B's module;
  - a `crate::...`, `$crate::...` or `super::...` path anywhere in code (macro bodies included);
  - a path through a child module, `child::Item`, in the parent's code.
A parent's `mod child;` and its `pub use child::...` re-exports are not edges. A path that
lands on a module which only re-exports the item (`crate::Error` through lib.rs) is followed to
the module that defines it. `#[cfg(test)]` modules are left out: a unit test may use anything.

Between crates, the edges are the `[dependencies]` and `[build-dependencies]` among workspace
members (dev-dependencies, which cargo builds as a separate crate, are left out).

Usage: scripts/check-imports.py [--edges] [CRATE_DIR ...]   (default: every workspace member)
Exit status 1 and the circles printed when one exists; 0 otherwise.
"""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip_code(text):
    """Removes comments, string and char literals, keeping line structure."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r(#*)"', text[i:i + 20]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]) or (c == "'" and re.match(r"'\\u\{[0-9a-fA-F]+\}'", text[i:i + 14])):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_cfg_test_modules(code):
    """Removes `#[cfg(test)] mod name { ... }` blocks (a unit test may use anything)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", code)
        if not m:
            return code
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[: m.start()] + "\n" * code.count("\n", m.start(), j) + code[j:]


def module_path(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def split_use_tree(tree):
    """`a::{b, c::{d as e}}` -> [a::b, a::c::d@e] (an alias after `@`; glob and self kept)."""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^([\w:]*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    out = []
    for item in items:
        if item:
            out += [prefix + sub for sub in split_use_tree(item)]
    return out


class Crate:
    def __init__(self, crate_dir):
        self.dir = crate_dir
        self.src = crate_dir / "src"
        self.files = {}  # module path -> file
        self.code = {}  # module path -> stripped code
        for path in sorted(self.src.rglob("*.rs")):
            mod = module_path(self.src, path)
            if path.name == "main.rs" and (self.src / "lib.rs").exists():
                continue
            if "bin" in path.relative_to(self.src).parts:
                continue
            self.files[mod] = path
            self.code[mod] = drop_cfg_test_modules(strip_code(path.read_text()))
        self.reexports = {mod: self._reexports(mod) for mod in self.files}

    def _reexports(self, mod):
        """name -> absolute path of what `pub use` in this module re-exports."""
        found = {}
        for m in re.finditer(r"\bpub(\([^)]*\))?\s+use\s+([^;]+);", self.code[mod]):
            for item in split_use_tree(m.group(2)):
                path, _, alias = item.partition("@")
                target = self.absolute(mod, path.split("::"))
                if target is None:
                    continue
                name = alias or target[-1]
                found[name] = target
        return found

    def absolute(self, mod, segments):
        """Absolute path of `segments` seen from `mod`, or None when it leaves the crate."""
        segments = [s for s in segments if s]
        if not segments:
            return None
        head = segments[0]
        if head in ("crate", "$crate"):
            return tuple(segments[1:])
        if head == "super":
            base = list(mod)
            while segments and segments[0] == "super":
                if not base:
                    return None
                base.pop()
                segments = segments[1:]
            return tuple(base + segments)
        if head == "self":
            return tuple(list(mod) + segments[1:])
        if tuple(list(mod) + [head]) in self.files:
            return tuple(list(mod) + segments)
        return None

    def owner(self, path, seen=None):
        """The file module that defines the item at absolute `path`."""
        seen = seen or set()
        best = ()
        for k in range(len(path), -1, -1):
            if tuple(path[:k]) in self.files:
                best = tuple(path[:k])
                break
        rest = path[len(best):]
        if rest and rest[0] in self.reexports.get(best, {}) and (best, rest[0]) not in seen:
            seen.add((best, rest[0]))
            target = self.reexports[best][rest[0]] + tuple(rest[1:])
            return self.owner(target, seen)
        return best

    def edges(self):
        edges = {}
        for mod, code in self.code.items():
            targets = {}
            reexport_spans = [m.span() for m in re.finditer(r"\bpub(\([^)]*\))?\s+use\s+[^;]+;", code)]
            use_spans = []
            for m in re.finditer(r"\buse\s+([^;]+);", code):
                if any(a <= m.start() < b for a, b in reexport_spans):
                    continue
                use_spans.append(m.span())
                for item in split_use_tree(m.group(1)):
                    segs = item.partition("@")[0].replace("*", "").split("::")
                    target = self.absolute(mod, segs)
                    if target is not None:
                        self._add(targets, mod, target, m.start())
            children = {p[-1] for p in self.files if len(p) == len(mod) + 1 and p[: len(mod)] == mod}
            for m in re.finditer(r"(?<![\w:])(\$?crate|super|self|[a-z_][a-z0-9_]*)((?:::\w+)+)", code):
                if any(a <= m.start() < b for a, b in reexport_spans + use_spans):
                    continue
                head = m.group(1)
                if head not in ("crate", "$crate", "super", "self") and head not in children:
                    continue
                segs = [head] + m.group(2).split("::")[1:]
                target = self.absolute(mod, segs)
                if target is not None:
                    self._add(targets, mod, target, m.start())
            edges[mod] = targets
        return edges

    def _add(self, targets, mod, target, pos):
        owner = self.owner(target)
        if owner != mod:
            line = self.code[mod].count("\n", 0, pos) + 1
            targets.setdefault(owner, line)

    def name(self, mod):
        return str(self.files[mod].relative_to(ROOT))


def find_cycles(nodes, edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def workspace_members():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return [ROOT / m for m in manifest["workspace"]["members"]]


def crate_graph(members):
    names, deps = {}, {}
    for d in members:
        manifest = tomllib.loads((d / "Cargo.toml").read_text())
        names[manifest["package"]["name"]] = d
    for name, d in names.items():
        manifest = tomllib.loads((d / "Cargo.toml").read_text())
        found = set()
        for table in ("dependencies", "build-dependencies"):
            found |= {k for k in manifest.get(table, {}) if k in names}
        deps[name] = found
    return deps


def main(argv):
    show_edges = "--edges" in argv
    args = [a for a in argv if not a.startswith("--")]
    members = [Path(a).resolve() for a in args] or workspace_members()
    failed = False
    for d in members:
        if not (d / "src").exists():
            continue
        crate = Crate(d)
        edges = crate.edges()
        if show_edges:
            for mod, targets in sorted(edges.items()):
                for target, line in sorted(targets.items()):
                    print(f"{crate.name(mod)}:{line} -> {crate.name(target)}")
        for cycle in find_cycles(list(crate.files), edges):
            failed = True
            print(f"import circle in {d.relative_to(ROOT)}:")
            members_set = set(cycle)
            for mod in cycle:
                for target, line in sorted(edges[mod].items()):
                    if target in members_set:
                        print(f"  {crate.name(mod)}:{line} -> {crate.name(target)}")
    if not args:
        deps = crate_graph(workspace_members())
        for cycle in find_cycles(list(deps), {k: sorted(v) for k, v in deps.items()}):
            failed = True
            print("dependency circle between crates: " + " -> ".join(cycle))
    if failed:
        return 1
    print("no import circles: " + ", ".join(str(d.relative_to(ROOT)) for d in members))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
