#!/usr/bin/env python3
"""Runs the workspace's tests with independent test binaries in parallel.

`cargo test --workspace` runs its ~40 test binaries one after another, and most of them spend
their time waiting on Kafka, so the suite took minutes longer than its CPU needs. This script
builds them all with `cargo test --workspace --no-run --message-format=json`, then runs the
binaries (and `cargo test --workspace --doc`) at most --jobs at a time, slowest first, each
as cargo would: in its package's directory, with cargo's CARGO_* variables.

The integration tests are one binary (tests/tests/harness.rs) whose modules run as separate
jobs, each in its own process as when they were binaries (see `Job.per_module`).

Each job's output goes to target/test-logs/<package>-<target or module>.log; a failing job's
output is printed in full. Exit code 1 when any binary fails (all run: no fail-fast), or when
the build fails (cargo's exit code).

    scripts/run-tests.py [--jobs N] [--timeout SECONDS] [-- extra cargo test arguments]

Arguments after `--` go to both cargo invocations (e.g. `--features ...`); nextest is not
used because installing it compiles for minutes on a fresh machine (only crates.io is
reachable, so `cargo install --locked cargo-nextest` builds it from source).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Test binaries that hold many former binaries as modules (tests/tests/harness.rs): each module
# runs as a job of its own (see `Job.per_module`).
SPLIT = ["faststream-integration-tests/harness"]

# Binaries known to take longest (seconds on a 2-core machine), started first so that the
# pool does not end waiting on one of them. Others run in build order after these.
SLOW_FIRST = ["faststream-cli/cli", "faststream-macros/ui", "doc-tests", "faststream-integration-tests/testing",
              "faststream-integration-tests/runtime", "faststream-integration-tests/python_interop",
              "faststream-integration-tests/asyncapi", "faststream-integration-tests/process"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("TEST_JOBS", "4")),
                        help="test binaries run at once (TEST_JOBS; default 4)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one binary may run before it is killed and fails (default 900)")
    parser.add_argument("cargo_args", nargs="*", help="extra arguments for cargo test")
    args = parser.parse_args()

    cargo = os.environ.get("CARGO", "cargo")
    root = Path(__file__).resolve().parent.parent
    metadata = json.loads(subprocess.run(
        [cargo, "metadata", "--no-deps", "--format-version", "1"], cwd=root,
        check=True, stdout=subprocess.PIPE).stdout)
    packages = {p["manifest_path"]: p for p in metadata["packages"]}
    target_dir = Path(metadata["target_directory"])
    logs = target_dir / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)

    # The build: diagnostics are rendered to stderr as cargo would print them.
    started = time.monotonic()
    build = subprocess.Popen(
        [cargo, "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics",
         *args.cargo_args], cwd=root, stdout=subprocess.PIPE, text=True)
    binaries = []
    assert build.stdout is not None
    for line in build.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message.get("profile", {}).get("test"):
            continue  # a binary built for the tests (e.g. the CLI's), not a test binary
        package = packages.get(message.get("manifest_path"))
        if package is None:
            continue
        binaries.append(Job(package, message["target"]["name"], message["executable"]))
    if build.wait() != 0:
        print(f"run-tests: the build failed (cargo exit {build.returncode})", file=sys.stderr)
        return build.returncode
    print(f"run-tests: built {len(binaries)} test binaries in {time.monotonic() - started:.0f} s; "
          f"running them {args.jobs} at a time with the doc tests", flush=True)

    # As cargo does: the toolchain's libraries (libstd-*.so, which proc-macro crates' unit tests
    # link dynamically) and the target's deps on the dynamic library path.
    rustc = os.environ.get("RUSTC", "rustc")
    sysroot = Path(subprocess.run([rustc, "--print", "sysroot"], check=True, stdout=subprocess.PIPE,
                                  text=True).stdout.strip())
    version = subprocess.run([rustc, "-vV"], check=True, stdout=subprocess.PIPE, text=True).stdout
    host = next(line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("host:"))
    dylib_path = [str(sysroot / "lib" / "rustlib" / host / "lib"), str(sysroot / "lib"),
                  str(target_dir / "debug" / "deps"),
                  *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep))]
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(dylib_path)
    binaries = [job for binary in binaries for job in binary.per_module()]

    doc = Job(None, "doc-tests", None, command=[cargo, "test", "--workspace", "--doc", *args.cargo_args], cwd=root)
    jobs = binaries + [doc]
    rank = {key: i for i, key in enumerate(SLOW_FIRST)}
    jobs.sort(key=lambda job: rank.get(job.key, len(rank)))

    lock = threading.Lock()

    def run(job: "Job") -> bool:
        ok, seconds, log = job.run(cargo, logs, args.timeout)
        with lock:
            if ok:
                print(f"  ok    {job.key} ({seconds:.1f} s)", flush=True)
            else:
                print(f"  FAIL  {job.key} ({seconds:.1f} s): its output ({log})", flush=True)
                sys.stdout.write(log.read_text(errors="replace"))
                print(f"  ----  end of {job.key}", flush=True)
        return ok

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run, jobs))
    failed = [job.key for job, ok in zip(jobs, results) if not ok]
    total = time.monotonic() - started
    if failed:
        print(f"run-tests: {len(failed)} of {len(jobs)} failed ({total:.0f} s): {', '.join(failed)}")
        return 1
    print(f"run-tests: all {len(jobs)} passed ({total:.0f} s)")
    return 0


class Job:
    """One test binary (or a module of one, or the doc tests' cargo command) and how to run it."""

    def __init__(self, package, target, executable, command=None, cwd=None):
        self.package = package
        self.key = f"{package['name']}/{target}" if package else target
        if package is not None:
            self.command = [executable]
            self.cwd = Path(package["manifest_path"]).parent
        else:
            self.command = command
            self.cwd = cwd

    def per_module(self) -> list:
        """A binary of SPLIT as one job per top-level module of its tests (each module was a
        binary of its own once, and keeps its process and its log: `<package>/<module>`),
        any other as itself. The tests outside a module run as `<package>/<target>`."""
        if self.package is None or self.key not in SPLIT:
            return [self]
        listed = subprocess.run([*self.command, "--list", "--format", "terse"], cwd=self.cwd,
                                env=self.env(os.environ.get("CARGO", "cargo")), check=True,
                                stdout=subprocess.PIPE, text=True).stdout
        groups: dict = {}
        for line in listed.splitlines():
            if not line.endswith(": test"):
                continue
            name = line[: -len(": test")]
            module = name.split("::", 1)[0] if "::" in name else self.key.split("/", 1)[1]
            groups.setdefault(module, []).append(name)
        jobs = []
        for module, names in groups.items():
            job = Job(self.package, module, self.command[0])
            job.command = [self.command[0], "--exact", *names]
            jobs.append(job)
        return jobs

    def env(self, cargo: str) -> dict:
        """The variables cargo sets when it runs a test binary itself."""
        env = dict(os.environ)
        env["CARGO"] = cargo
        if self.package is not None:
            env.update({
                "CARGO_MANIFEST_DIR": str(self.cwd),
                "CARGO_MANIFEST_PATH": self.package["manifest_path"],
                "CARGO_PKG_NAME": self.package["name"],
                "CARGO_PKG_VERSION": self.package["version"],
                "CARGO_CRATE_NAME": self.package["name"].replace("-", "_"),
            })
        return env

    def run(self, cargo: str, logs: Path, timeout: float):
        log = logs / (self.key.replace("/", "-") + ".log")
        started = time.monotonic()
        with open(log, "w") as out:
            try:
                # Its own process group, so a timeout also ends what the test started.
                process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env(cargo), stdout=out,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
            except OSError as err:
                out.write(f"cannot start {self.command[0]}: {err}\n")
                return False, 0.0, log
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
                out.write(f"\nrun-tests: killed after {timeout:.0f} s\n")
                code = -9
        return code == 0, time.monotonic() - started, log


if __name__ == "__main__":
    sys.exit(main())
