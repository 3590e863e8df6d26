"""Run untrusted Python (a model's code and its unit tests) in a separate, confined process.

Code judges and code rewards hand :func:`execute_program` a whole program; it runs in a fresh process
inside new Linux namespaces (mount, network, pid, IPC, UTS, and a user namespace when not root) with
resource limits, and comes back as an :class:`ExecutionResult`. Nothing is ever executed in the calling
process. What is and is not contained is stated in ``docs/sandbox.md``.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

from posttrain.errors import UserError

__all__ = [
    "ExecutionResult",
    "Isolation",
    "SandboxLimits",
    "SandboxUnavailable",
    "execute_program",
    "namespace_support",
]

logger = logging.getLogger(__name__)

Isolation = Literal["namespaces", "rlimits"]
Status = Literal["passed", "failed", "timeout", "memory", "error"]

# Directories every interpreter needs (its C library and loader), bound read-only into the sandbox.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The sandbox's own view: the program runs in SANDBOX_DIR, a directory of a fresh tmpfs.
SANDBOX_DIR = "/sandbox"
PROGRAM_FILE = "main.py"
# Without a user namespace (when the caller is root) the program runs as its own uid, one per run, so
# that the process limit counts only its processes: this base plus the launcher's pid.
SANDBOX_UID_BASE = 1 << 30
# The program's whole environment; nothing is inherited from the caller.
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
# How long the launcher may take to report after the program ended, and to wind down after a kill.
GRACE_SECONDS = 1.0


class SandboxUnavailable(UserError, RuntimeError):
    """The requested isolation cannot be set up on this machine; the message says what is missing."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Attributes:
        wall_time: seconds of real time from start to kill, start-up of the sandbox included.
        cpu_time: seconds of CPU time per process (RLIMIT_CPU); a whole number, as the kernel counts it.
        memory: bytes of address space per process (RLIMIT_AS); allocations past it fail.
        processes: processes and threads the program may have at once, itself included (RLIMIT_NPROC,
            counted in the run's own user namespace or uid). Not enforced with ``isolation="rlimits"``.
        file_size: bytes, the largest file the program may write (RLIMIT_FSIZE).
        disk: bytes of the sandbox's tmpfs, all files together (namespaces only; the tmpfs is memory).
        open_files: file descriptors per process (RLIMIT_NOFILE).
        output: bytes kept of stdout and of stderr each: the last ones, the rest is read and dropped.
    """

    wall_time: float = 10.0
    cpu_time: int = 10
    memory: int = 1 << 30
    processes: int = 16
    file_size: int = 16 << 20
    disk: int = 64 << 20
    open_files: int = 256
    output: int = 64 << 10

    def __post_init__(self) -> None:
        if not self.wall_time > 0:
            raise ValueError(f"wall_time must be a positive number of seconds, got {self.wall_time!r}")
        for name in ("cpu_time", "memory", "processes", "file_size", "disk", "open_files", "output"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.memory < 32 << 20:
            raise ValueError(
                f"memory must be at least 32 MiB (the interpreter alone needs ~20), got {self.memory}"
            )


@dataclass(frozen=True)
class ExecutionResult:
    """What became of one program.

    Attributes:
        status: ``passed`` (exit status 0), ``failed`` (any other exit, or killed by a signal of its own
            doing), ``timeout`` (the wall-clock or CPU-time limit), ``memory`` (it ran out of its address
            space) or ``error`` (the sandbox itself could not run it; ``reason`` says why).
        reason: one line for a person: the exception the program died of, the limit it hit, ...
        returncode: the program's exit status; ``-N`` if signal N killed it; None if it never ran to an end.
        stdout, stderr: the last ``limits.output`` bytes of each, decoded as UTF-8 with replacement.
        truncated: whether more output was produced than kept.
        wall_time: seconds from start to the end of the run, sandbox start-up included.
        cpu_time: seconds of CPU the program's main process used (user + system), when known.
    """

    status: Status
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    wall_time: float
    cpu_time: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# The launcher: run by the sandbox's interpreter (`python -I -S -c`), first inside the new namespaces, as
# their root. It reads its settings (one JSON line) and the program from stdin, builds the sandbox's file
# system, starts the program as a confined child, waits for it as the pid namespace's init, and reports
# the outcome as one line on its status pipe, which the program never holds. Start-up time matters (one
# launcher per program): both lines are Python literals rather than JSON, whose import pulls in re, and
# _signal stands in for signal, whose enums cost milliseconds. The settings line comes from the caller,
# never from the program. Plain stdlib, and every import happens before the host's file system is detached.
_LAUNCHER = r"""
import _signal as signal
import ctypes, os, resource, sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_PRIVATE = 1, 2, 4, 32, 4096, 1 << 18
MS_REC, MNT_DETACH = 1 << 14, 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 4, 24, 28, 38
# SECBIT_NOROOT (uid 0 gains no capability by executing a program) and locks on it, on keep-caps and
# on raising ambient capabilities.
SECUREBITS = 0x01 | 0x02 | 0x20 | 0x40 | 0x80
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}
KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}
KEYCTL_JOIN_SESSION_KEYRING = 1
DEVICES = ("null", "zero", "random", "urandom")
libc = ctypes.CDLL(None, use_errno=True)
status = os.fdopen(int(sys.argv[1]), "w")
os.set_inheritable(status.fileno(), False)


def report(**fields):
    status.write(repr(fields) + "\n")
    status.flush()


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, what + ": " + os.strerror(errno))


def mount(source, target, fstype, flags, data=None):
    encode = lambda text: None if text is None else text.encode()
    where = "mount %s on %s" % (source or fstype or "flags", target)
    check(libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), where)


def pivot_root(new_root, put_old):
    if hasattr(libc, "pivot_root"):
        result = libc.pivot_root(new_root.encode(), put_old.encode())
    else:
        number = PIVOT_ROOT_SYSCALL.get(os.uname().machine)
        if number is None:
            raise OSError(0, "pivot_root: no wrapper in the C library and no known syscall number")
        result = libc.syscall(number, new_root.encode(), put_old.encode())
    check(result, "pivot_root " + new_root)


def bind(path, read_only=True):
    # Bind the host's `path` (under /old) at the same place in the new root (under /new).
    source, target = "/old" + path, "/new" + path
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").close()
    mount(source, target, None, MS_BIND)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_root(config):
    # A throw-away tmpfs becomes the root with the host's root under /old, so that host paths stay
    # reachable (even those under /tmp) while the sandbox's own root is assembled under /new.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    os.mkdir("/tmp/old")
    pivot_root("/tmp", "/tmp/old")
    os.chdir("/")
    os.mkdir("/new")
    size = "size=%d,nr_inodes=%d,mode=0755" % (config["disk"], 4096)
    mount("tmpfs", "/new", "tmpfs", MS_NOSUID | MS_NODEV, size)
    for path in config["binds"]:
        if os.path.lexists("/old" + path):
            bind(path)
    os.makedirs("/new/dev/shm")
    for device in DEVICES:
        bind("/dev/" + device, read_only=False)
    for path in ("/tmp", "/dev/shm"):
        os.makedirs("/new" + path, exist_ok=True)
        os.chmod("/new" + path, 0o1777)
    os.mkdir("/new" + config["workdir"])
    if config["uid"] is not None:
        os.chown("/new" + config["workdir"], config["uid"], config["uid"])
    check(libc.sethostname(b"sandbox", 7), "sethostname")
    # Stack the new root over the old one, then detach the old one with everything under it: from here
    # on no path leads to the host's files.
    os.chdir("/new")
    pivot_root(".", ".")
    check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def drop_privileges(config):
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel has
    check(libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0), "set securebits")
    uid = config["uid"]
    if uid is not None:  # setting a non-zero uid clears every capability
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def start_program(config, null):
    limits = config["limits"]
    pid = os.fork()
    if pid:
        return pid
    try:
        os.dup2(null, 0)
        cpu = limits["cpu_time"]
        for which, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (limits["memory"],) * 2),
            (resource.RLIMIT_FSIZE, (limits["file_size"],) * 2),
            (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
            (resource.RLIMIT_CORE, (0, 0)),
        ):
            resource.setrlimit(which, value)
        if config["mode"] == "namespaces":
            resource.setrlimit(resource.RLIMIT_NPROC, (config["nproc"],) * 2)
            drop_privileges(config)
        # A new, empty session keyring: the caller's keys (Kerberos tickets, for one) stay out of reach.
        keyctl = KEYCTL_SYSCALL.get(os.uname().machine)
        if keyctl is not None:
            libc.syscall(keyctl, KEYCTL_JOIN_SESSION_KEYRING, None)
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
        python = config["python"]
        os.execve(python, [python, "-I", "-S", config["program"]], config["env"])
    except BaseException as error:
        report(setup_error="starting the program: %s: %s" % (type(error).__name__, error))
    os._exit(127)


def wait_for(child):
    while True:
        try:
            pid, code, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return None, None
        if pid == child:
            return code, usage.ru_utime + usage.ru_stime


def main():
    config = eval(sys.stdin.buffer.readline(), {"__builtins__": {}})
    source = sys.stdin.buffer.read()
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        if config["mode"] == "namespaces":
            build_root(config)
        os.chdir(config["workdir"])
        with open(config["program"], "wb") as file:
            file.write(source)
    except BaseException as error:
        report(setup_error="%s: %s" % (type(error).__name__, error))
        return
    # A backstop for the caller's own wall-clock limit, should the caller die first.
    def expire(signum, frame):
        report(timeout="wall")
        if config["mode"] != "namespaces":
            os.killpg(0, signal.SIGKILL)
        os._exit(0)  # as the pid namespace's init, taking every process in it along
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(config["alarm"])
    child = start_program(config, null)
    code, cpu = wait_for(child)
    signal.alarm(0)
    if code is None:
        report(setup_error="lost track of the program")
    elif os.WIFSIGNALED(code):
        report(signal=os.WTERMSIG(code), cpu=cpu)
    else:
        report(exit=os.WEXITSTATUS(code), cpu=cpu)


main()
"""


@dataclass(frozen=True)
class _Interpreter:
    """The interpreter that runs the launcher and the program, and the host paths it needs."""

    executable: str
    paths: tuple[str, ...]


@functools.cache
def _interpreter(python: str | None) -> _Interpreter:
    if python is None:
        executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        prefixes = [sys.base_prefix, sys.base_exec_prefix]
    else:
        executable = os.path.realpath(shutil.which(python) or python)
        query = "import json, sys; print(json.dumps([sys.base_prefix, sys.base_exec_prefix]))"
        try:
            out = subprocess.run(
                [executable, "-I", "-S", "-c", query], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as error:
            raise ValueError(f"cannot run the interpreter {python!r}: {error}") from error
        prefixes = json.loads(out)
    candidates = [os.path.realpath(p) for p in [*prefixes, os.path.dirname(executable)]]
    paths = [p for p in SYSTEM_PATHS if os.path.lexists(p)]
    for path in sorted(set(candidates), key=len):
        if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths):
            paths.append(path)
    return _Interpreter(executable, tuple(paths))


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes it had in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: -self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit :]).decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total > self.limit


def _user_namespace() -> bool:
    """Whether runs get a user namespace: everyone but root, who cannot be limited inside one.

    A user namespace maps its creator to root inside, which is what lets an unprivileged caller build
    the other namespaces. Root needs none, and inside one would stay the host's uid 0, which the kernel
    exempts from the process limit; root's runs get a uid of their own instead (see SANDBOX_UID_BASE).
    """
    return os.geteuid() != 0


def _unshare_command(unshare: str, user_namespace: bool) -> list[str]:
    user = ["--user", "--map-root-user"] if user_namespace else []
    return [unshare, *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--"]


@functools.cache
def _probe(unshare: str, python: str | None, user_namespace: bool) -> str | None:
    result = _run("pass", SandboxLimits(wall_time=30), "namespaces", _interpreter(python), unshare)
    if result.passed:
        return None
    detail = (result.stderr.strip().splitlines() or [result.reason])[-1]
    return f"a trial run in namespaces failed ({result.reason}; {detail})"


def namespace_support(python: str | None = None) -> str | None:
    """None if programs can run in namespaces here, else why not (what is missing).

    The answer comes from one trial run, cached per ``unshare`` binary and interpreter.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return "the unshare command (util-linux) is not on PATH"
    return _probe(unshare, python, _user_namespace())


def execute_program(
    source: str,
    *,
    limits: SandboxLimits | None = None,
    isolation: Isolation = "namespaces",
    python: str | None = None,
) -> ExecutionResult:
    """Run the Python program ``source`` in a fresh sandboxed process and say how it ended.

    Args:
        source: the whole program, run as ``main.py`` in an empty working directory with only the
            standard library (the interpreter runs with ``-I -S``), stdin at end of file, and an
            environment of ``PATH`` and ``LANG`` only.
        limits: resource limits; the defaults suit unit tests of short functions.
        isolation: ``"namespaces"`` (the default) confines the program's view of files, network and
            processes; ``"rlimits"`` only limits its resources and must be asked for explicitly. See
            ``docs/sandbox.md`` for what each guarantees.
        python: the interpreter to run (default: the base interpreter of this one).

    Raises:
        SandboxUnavailable: namespaces were asked for and cannot be set up here.
    """
    limits = limits or SandboxLimits()
    interpreter = _interpreter(python)
    if isolation == "namespaces":
        missing = namespace_support(python)
        if missing is not None:
            raise SandboxUnavailable(
                f"cannot confine untrusted code on this machine: {missing}. Namespaces need util-linux's "
                f"unshare and unprivileged user namespaces (sysctl user.max_user_namespaces > 0, and "
                f"kernel.unprivileged_userns_clone = 1 where it exists), or root. To run with resource "
                f"limits only (no file system, network or process-tree isolation), pass isolation='rlimits'."
            )
        return _run(source, limits, isolation, interpreter, shutil.which("unshare"))
    if isolation == "rlimits":
        _warn_rlimits_only()
        return _run(source, limits, isolation, interpreter, None)
    raise ValueError(f"isolation must be 'namespaces' or 'rlimits', got {isolation!r}")


@functools.cache
def _warn_rlimits_only() -> None:
    logger.warning(
        "running untrusted code with resource limits only (isolation='rlimits'): it can read the files, "
        "use the network and signal the processes that this user can"
    )


def _run(
    source: str, limits: SandboxLimits, isolation: Isolation, interpreter: _Interpreter, unshare: str | None
) -> ExecutionResult:
    start = time.monotonic()
    status_read, status_write = os.pipe()
    launcher = [interpreter.executable, "-I", "-S", "-c", _LAUNCHER, str(status_write)]
    scratch = None
    config = {
        "mode": isolation,
        "python": interpreter.executable,
        "program": PROGRAM_FILE,
        "env": dict(PROGRAM_ENV),
        "limits": {
            "cpu_time": limits.cpu_time,
            "memory": limits.memory,
            "file_size": limits.file_size,
            "open_files": limits.open_files,
        },
        "alarm": math.ceil(limits.wall_time) + 2,
    }
    user_namespace = _user_namespace()
    if isolation == "namespaces":
        command = [*_unshare_command(unshare, user_namespace), *launcher]
        config.update(binds=list(interpreter.paths), disk=limits.disk, workdir=SANDBOX_DIR)
        config["env"].update(HOME=SANDBOX_DIR, TMPDIR="/tmp")
    else:
        command = launcher
        scratch = tempfile.mkdtemp(prefix="posttrain-sandbox-")
        config.update(workdir=scratch)
        config["env"].update(HOME=scratch, TMPDIR=scratch)
    try:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_write,),
                env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
            )
        finally:
            os.close(status_write)
        if isolation == "namespaces":
            config["uid"] = None if user_namespace else SANDBOX_UID_BASE + process.pid
            # In a user namespace unshare and the launcher hold the program's uid too.
            config["nproc"] = limits.processes + (2 if user_namespace else 0)
        payload = repr(config).encode() + b"\n" + source.encode("utf-8", errors="replace")
        return _supervise(process, payload, status_read, limits, start)
    finally:
        os.close(status_read)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _supervise(
    process: subprocess.Popen, payload: bytes, status_read: int, limits: SandboxLimits, start: float
) -> ExecutionResult:
    """Feed the launcher, collect output and its report, and kill the run at the deadline."""
    stdout, stderr, status = _Tail(limits.output), _Tail(limits.output), _Tail(1 << 16)
    sinks = {process.stdout.fileno(): stdout, process.stderr.fileno(): stderr, status_read: status}
    selector = selectors.DefaultSelector()
    for fd in sinks:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    stdin = process.stdin.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_WRITE)
    deadline = start + limits.wall_time
    timed_out = finishing = False  # finishing: the launcher reported or the run was killed; drain only
    try:
        while sinks:
            now = time.monotonic()
            if now >= deadline:
                if finishing:
                    break
                timed_out = finishing = True
                _kill_session(process)
                deadline = now + GRACE_SECONDS
                continue
            for key, _ in selector.select(deadline - now):
                fd = key.fd
                if fd == stdin:
                    try:
                        payload = payload[os.write(fd, payload[: 1 << 16]) :]
                    except BrokenPipeError:
                        payload = b""
                    if not payload:
                        selector.unregister(fd)
                        process.stdin.close()
                    continue
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    sinks[fd].add(chunk)
                    continue
                selector.unregister(fd)
                del sinks[fd]
                if fd == status_read and not finishing:
                    # The launcher is done. Whatever the program left running goes now; output already
                    # written is drained for a moment.
                    finishing = True
                    _kill_session(process)
                    deadline = min(deadline, time.monotonic() + GRACE_SECONDS)
    finally:
        selector.close()
        _kill_session(process)
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if not pipe.closed:
                pipe.close()
    wall_time = time.monotonic() - start
    reports = [_literal(line) for line in status.text().splitlines()]
    return _verdict(reports, timed_out, process.returncode, stdout, stderr, limits, wall_time)


def _literal(line: str) -> dict:
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        return {}
    return value if isinstance(value, dict) else {}


def _kill_session(process: subprocess.Popen) -> None:
    """Kill every process of the run's session.

    The launcher (or ``unshare``) leads the session and is not reaped before this, so its pid, which is
    the session's id, cannot have been reused. With namespaces, killing ``unshare`` also kills the pid
    namespace's init and with it every process inside, those that left the session included.
    """
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _verdict(
    reports: list[dict],
    timed_out: bool,
    launcher_code: int | None,
    stdout: _Tail,
    stderr: _Tail,
    limits: SandboxLimits,
    wall_time: float,
) -> ExecutionResult:
    err = stderr.text()
    cpu = next((r["cpu"] for r in reports if "cpu" in r), None)

    def result(status: Status, reason: str, returncode: int | None = None) -> ExecutionResult:
        return ExecutionResult(
            status=status,
            reason=reason,
            returncode=returncode,
            stdout=stdout.text(),
            stderr=err,
            truncated=stdout.truncated or stderr.truncated,
            wall_time=wall_time,
            cpu_time=cpu,
        )

    setup = next((r["setup_error"] for r in reports if "setup_error" in r), None)
    if setup is not None:
        return result("error", f"the sandbox could not start the program: {setup}")
    if timed_out or any("timeout" in r for r in reports):
        return result("timeout", f"killed at the wall-clock limit of {limits.wall_time:g} s")
    final = next((r for r in reports if "exit" in r or "signal" in r), None)
    if final is None:
        last = (err.strip().splitlines() or ["no output"])[-1]
        return result("error", f"the sandbox ended without a report (status {launcher_code}): {last}")
    if "signal" in final:
        number = final["signal"]
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGXCPU or (
            number == signal.SIGKILL and cpu is not None and cpu >= limits.cpu_time
        ):
            return result("timeout", f"killed at the CPU-time limit of {limits.cpu_time} s", -number)
        return result("failed", f"killed by {name}", -number)
    code = final["exit"]
    if code == 0:
        return result("passed", "exited with status 0", 0)
    last = _last_error_line(err)
    if _out_of_memory(last):
        return result(
            "memory", f"ran out of memory (address space limit {limits.memory} bytes): {last}", code
        )
    return result("failed", last or f"exited with status {code}", code)


def _last_error_line(stderr: str) -> str:
    """The line naming the exception a Python traceback ends with, else the last line."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _out_of_memory(line: str) -> bool:
    return line.startswith("MemoryError") or "Cannot allocate memory" in line or "out of memory" in line
