#!/usr/bin/env python3
"""The README's commands work as written: every shell block (```sh, ```bash, ```shell) runs, and
every transcript (```console: `$ command` lines, each followed by its output) runs and prints what
it shows, in the README's order, in one bash session (`set -euo pipefail`) started in the
checkout, so a block's `cd` and `export` hold for the blocks after it, as in a reader's terminal.
The install prefix (/opt/elpips) is moved to a temporary folder, `mktemp` makes its folders in
there too, and the loader environment is unset (LD_LIBRARY_PATH, ORT_DYLIB_PATH,
ELPIPS_MODEL_DIR, PKG_CONFIG_PATH), as is the outer make's. A block the test cannot run (one that
needs the network, a GPU or a CI engine, or is the test suite itself) carries an HTML comment
`<!-- not run: REASON -->` on the line before its fence; every other shell block runs, and a
marker without a reason or a command that fails fails the test. C blocks are compiled (as a
function body taking `ref_pixels`, `cand_pixels`, `w` and `h`, against include/elpips.h, warnings
as errors); blocks in other languages are listed as not run, by language; a block without a
language is refused (it could hide commands). Every relative link names a file that exists and,
with an anchor, a heading in it (the docs pages' sections move).

A prefix outside the loader's path used to build a program that could not start
(libelpips.so.0 not found): the C program's line is checked for a distance.

Usage: readme_commands.py README.md (run from the checkout's root; standard library only)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "/opt/elpips"
SHELL = {"sh", "bash", "shell"}
MARK = "@@readme-block "
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class Block:
    def __init__(self, line, lang, text, marker):
        self.line, self.lang, self.text, self.marker = line, lang, text, marker

    def where(self):
        return f"README line {self.line} (```{self.lang})"


def blocks(readme):
    """The README's fenced blocks, each with the HTML comment on the line before its fence."""
    lines = Path(readme).read_text().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            sys.exit(f"readme_commands: README line {i + 1}: a code block that is never closed")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = lines[k].strip() if k >= 0 and lines[k].strip().startswith("<!--") else ""
        out.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n", marker))
        i = j + 1
    return out


def not_run_reason(block):
    m = re.match(r"<!--\s*not run:(.*?)-->$", block.marker, re.S)
    if m is None:
        return None
    reason = m.group(1).strip()
    if not reason:
        sys.exit(f"readme_commands: {block.where()}: 'not run:' without a reason")
    return reason


def transcript(block):
    """[(command, expected output lines)] of a ```console block."""
    steps = []
    for line in block.text.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        else:
            sys.exit(f"readme_commands: {block.where()}: output before the first `$ ` command")
    return steps


def same_output(want, got):
    """Equal text, with numbers equal to 1e-4 relative (a thread count may move the last digits)."""
    if NUMBER.sub("#", want) != NUMBER.sub("#", got):
        return False
    for a, b in zip(NUMBER.findall(want), NUMBER.findall(got)):
        x, y = float(a), float(b)
        if abs(x - y) > 1e-4 * max(abs(x), abs(y)) + 1e-6:
            return False
    return True


def slug(heading):
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def check_links(readme):
    """Every relative link of the README names a file that exists, and a heading there."""
    bad = []
    for n, line in enumerate(Path(readme).read_text().split("\n"), 1):
        for path, anchor in re.findall(r"\]\(([^)#\s:]+)(?:#([^)\s]+))?\)", line):
            target = Path(readme).parent / path
            if not target.exists():
                bad.append(f"line {n}: {path} does not exist")
            elif anchor and anchor not in {slug(h) for h in re.findall(r"(?m)^#+ (.*)$", target.read_text())}:
                bad.append(f"line {n}: {path} has no heading #{anchor}")
    if bad:
        sys.exit("readme_commands: README links:\n  " + "\n  ".join(bad))


def compile_c(block, tmp):
    src = tmp / f"readme_{block.line}.c"
    body = "\n".join("    " + line for line in block.text.split("\n"))
    src.write_text("#include <stdint.h>\n#include <stdio.h>\n#include \"elpips.h\"\n\n"
                   "int readme_snippet(const void *ref_pixels, const void *cand_pixels, uint32_t w, uint32_t h);\n"
                   "int readme_snippet(const void *ref_pixels, const void *cand_pixels, uint32_t w, uint32_t h) {\n"
                   f"{body}\n    return 0;\n}}\n")
    out = subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-Wall", "-Wextra", "-Werror",
                          "-Wno-missing-field-initializers", "-Iinclude",  # `= {0.015}` zero-fills the rest, as documented
                          "-c", str(src), "-o", str(src.with_suffix(".o"))], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"readme_commands: the C block at {block.where()} does not compile:\n{out.stderr[-2000:]}")


def main():
    readme = sys.argv[1]
    check_links(readme)
    tmp = Path(tempfile.mkdtemp(prefix="elpips-readme-"))
    try:
        script = ["set -euo pipefail"]
        checks, ran, skipped = [], [], []
        for n, b in enumerate(blocks(readme)):
            reason = not_run_reason(b)
            if not b.lang:
                sys.exit(f"readme_commands: {b.where()}: a block without a language (```sh, ```console, ```text, ...) "
                         "could hide commands that are never run")
            if b.lang not in SHELL | {"console", "c"}:
                skipped.append(f"{b.where()}: not a command (language {b.lang or 'none'})")
                continue
            if reason is not None:
                skipped.append(f"{b.where()}: not run: {reason}")
                continue
            if b.lang == "c":
                compile_c(b, tmp)
                ran.append(b)
                continue
            script.append(f"echo '{MARK}{n}' >&2")
            if b.lang == "console":
                for k, (command, want) in enumerate(transcript(b)):
                    out = tmp / f"out-{n}-{k}"
                    script.append(f"{{ {command}\n}} > '{out}'")
                    checks.append((b, command, "\n".join(want), out))
            else:
                script.append(b.text)
            ran.append(b)
        text = "\n".join(script) + "\n"
        if PREFIX not in text:
            sys.exit(f"readme_commands: no block installs into {PREFIX} any more; update this test")
        text = text.replace(PREFIX, str(tmp / "opt" / "elpips"))
        env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "ORT_DYLIB_PATH", "ELPIPS_MODEL_DIR", "PKG_CONFIG_PATH")}
        # make's own variables would leak the outer make's settings into the README's `make`.
        for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
            env.pop(k, None)
        (tmp / "tmp").mkdir()
        env["TMPDIR"] = str(tmp / "tmp")
        blocks_by_n = {n: b for n, b in enumerate(blocks(readme))}
        try:
            out = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
        finally:
            Path("compare").unlink(missing_ok=True)
        if out.returncode != 0:
            started = [int(m) for m in re.findall(re.escape(MARK) + r"(\d+)", out.stderr)]
            where = blocks_by_n[started[-1]].where() if started else "the first block"
            stderr = re.sub(re.escape(MARK) + r".*\n", "", out.stderr)
            sys.exit(f"readme_commands: the block at {where} failed (exit {out.returncode}):\n{stderr[-2000:]}")
        for b, command, want, path in checks:
            got = path.read_text().rstrip("\n")
            if not same_output(want, got):
                sys.exit(f"readme_commands: {b.where()}: `{command}` printed\n{got}\nwhere the README shows\n{want}")
        lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{") and '"library"' in l]
        if not lines or not lines[-1]["distance"] > 0:
            sys.exit(f"readme_commands: the C program printed no distance:\n{out.stdout[-2000:]}")
        print(f"README: {len(ran)} blocks run as written (the install's prefix outside the loader's path; "
              f"the C program's distance {lines[-1]['distance']}), {len(checks)} transcript commands matched; not run:")
        for s in skipped:
            print("  " + s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
