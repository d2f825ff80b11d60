"""Real ``evalsuite`` processes without a new interpreter's imports: children forked from one server process that
imported evalsuite and its heavy dependencies (mteb, sentence-transformers, torch, onnxruntime) once.

A new ``evalsuite run`` spends about 12 CPU seconds importing before it does anything; the tests that need a real
process (one they kill, interrupt, run beside another, or run on a file system of its own) would pay that for
every run. A child of the server is a real process all the same: its own pid, its standard streams on the files
given, the signals sent to it, its own locks, and the exit code it ends with (negative: killed by that signal, as
``subprocess.Popen`` reports it). It runs ``evalsuite.cli.main()`` with the arguments, environment and working
directory given. What it is not is a fresh interpreter: a test of what a new process prints while it starts (``python
-m evalsuite``, a descriptor closed before start) starts the real command instead.

The server runs, where the kernel allows it, in a user and mount namespace of its own (``unshare``), where it can
mount a small tmpfs for a full-disk test without root; the test reaches such a file system through the server's
``/proc/PID/root`` (:meth:`Zygote.outside`). Everything else is the same file system for both.

The protocol is one JSON request per line on the server's stdin and one reply per line on its stdout.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

TIMEOUT = 300  # seconds; a safety net only, no test asserts on time
EVALSUITE = str(Path(sys.executable).with_name("evalsuite"))
# What a run imports lazily; a child imports anything else itself (slower, never wrong).
PRELOAD = ("evalsuite.cli", "evalsuite.run", "evalsuite.build", "evalsuite.encode", "torch", "onnxruntime", "onnx",
           "onnxruntime.quantization", "onnxruntime.transformers.optimizer", "transformers", "transformers.modeling_utils",
           "sentence_transformers", "datasets", "sklearn", "mteb", "pytrec_eval")


# --- the test's side -----------------------------------------------------------------------------------------------

class Zygote:
    """The server, started by the test process (see the module docstring); ``close()`` ends it and its mounts."""

    def __init__(self, log: Path) -> None:
        self.log = log
        why_not = ""
        command = [sys.executable, str(Path(__file__).resolve())]
        if shutil.which("unshare"):
            self._start(["unshare", "--user", "--map-root-user", "--mount", *command])
            if self.ready:
                self.namespace = True
                return
            why_not = self.log.read_text(errors="replace").strip()[-500:]
        self._start(command)
        assert self.ready, f"the process server did not start:\n{self.log.read_text(errors='replace')[-3000:]}"
        self.namespace = False
        self.no_namespace = f"no user namespace ({why_not or 'unshare is not installed'})"

    def _start(self, command: list[str]) -> None:
        from clirun import environment  # the environment of a test run: what the server's imports read

        with open(self.log, "ab") as log:
            self.server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                           env=environment())
        self.ready = self._read() == "ready"
        if not self.ready:
            self.server.wait()
            for pipe in (self.server.stdin, self.server.stdout):
                if pipe is not None:
                    pipe.close()

    def _read(self) -> str:
        assert self.server.stdout is not None
        return self.server.stdout.readline().strip()

    def _ask(self, **request: Any) -> str:
        assert self.server.stdin is not None and self.server.poll() is None, "the process server has ended"
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        return self._read()

    def start(self, args: list[str], *, env: dict[str, str], stdout: Path, stderr: Path, cwd: Path | None = None,
              pause: tuple[str, Path] | None = None, close_stdout: bool = False) -> Child:
        """``evalsuite ARGS`` as a child of the server; with ``pause``, it waits at that point (tests/pause_at.py); with
        ``close_stdout``, it starts with descriptor 1 closed (``stdout`` then receives nothing)."""
        reply = self._ask(op="start", args=[str(a) for a in args], env=env, cwd=str(cwd or os.getcwd()), stdout=str(stdout),
                          stderr=str(stderr), pause=None if pause is None else [pause[0], str(pause[1])],
                          close_stdout=close_stdout)
        return Child(self, int(reply))

    def mount_tmpfs(self, folder: Path, size: str) -> str | None:
        """Mount a tmpfs of ``size`` at ``folder`` where the children see it; None, or why it cannot be done."""
        reply = self._ask(op="mount", folder=str(folder), size=size)
        return None if reply == "ok" else reply

    def unmount(self, folder: Path) -> None:
        assert self._ask(op="umount", folder=str(folder)) == "ok"

    def outside(self, path: Path) -> Path:
        """Where this process reaches ``path`` (a path as the children see it, on a tmpfs mounted for them)."""
        return Path(f"/proc/{self.server.pid}/root") / path.relative_to("/") if self.namespace else path

    def close(self) -> None:
        """End the children still running (a test that failed half-way may leave one), then the server (it holds
        nothing to save; its namespace and mounts end with it)."""
        if self.server.poll() is None:
            self._ask(op="killall")
            self.server.kill()
        self.server.wait()
        for pipe in (self.server.stdin, self.server.stdout):
            if pipe is not None:
                pipe.close()


class Child:
    """A child of the server, with the part of ``subprocess.Popen``'s interface the tests use."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            reply = self.zygote._ask(op="poll", pid=self.pid)
            self.returncode = None if reply == "running" else int(reply)
        return self.returncode

    def wait(self, timeout: float | None = TIMEOUT) -> int:
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"evalsuite (pid {self.pid})", timeout or TIMEOUT)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# --- the server's side ---------------------------------------------------------------------------------------------

def _serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    sys.stdin.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    codes: dict[int, int] = {}
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "start":
            reply = str(_fork(request))
        elif op == "poll":
            reply = _poll(request["pid"], codes)
        elif op == "mount":
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request['size']}", "tmpfs", request["folder"]],
                                  capture_output=True, text=True)
            reply = "ok" if done.returncode == 0 else f"mount: {done.stderr.strip() or done.returncode}"
        elif op == "killall":
            for pid in _children:
                if _poll(pid, codes) == "running":
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            reply = "ok"
        elif op == "umount":
            subprocess.run(["umount", "-l", request["folder"]], check=True)
            reply = "ok"
        else:
            reply = f"unknown op {op!r}"
        print(reply.replace("\n", " "), file=out, flush=True)


def _poll(pid: int, codes: dict[int, int]) -> str:
    if pid not in codes:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            return "running"
        codes[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return str(codes[pid])


_children: list[int] = []


def _fork(request: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        _children.append(pid)
        return pid
    code = 1
    try:
        code = _child(request)
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop
        traceback.print_exc()
    finally:
        os._exit(code)


def _child(request: dict[str, Any]) -> int:
    """In the forked child: become ``evalsuite ARGS`` as a new process would be, run it, return its exit code."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - block-buffered, as for a file
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    if request.get("close_stdout"):  # as a process started with descriptor 1 closed: no descriptor 1, sys.stdout None
        os.close(1)
        sys.stdout = None  # type: ignore[assignment]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [EVALSUITE, *request["args"]]
    if request["pause"] is not None:
        import pause_at

        pause_at._install(request["pause"][0], Path(request["pause"][1]))
    code = 0
    try:
        from evalsuite.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as the interpreter would: a traceback and exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # what the interpreter does at exit
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
    return code


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # pause_at
    _serve()
