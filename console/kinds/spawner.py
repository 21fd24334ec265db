"""Starting the shell kind's commands, and the spawner process that does it off the loop.

`spawn()` starts a command with `subprocess.Popen`: in a new session, stdin from /dev/null,
fds closed, SIGPIPE & co. back to their defaults; a failed exec raises what Popen raises. That
call waits for the child's exec: milliseconds on the engine's loop when the commands, the
SQLite thread and the engine share two cores.

So the engine runs it in a small separate process, the spawner (this file run as a script by
`python -I -S`, standard library only): the engine sends a request (argv, cwd, environment)
with the two pipe ends for stdout and stderr over a Unix SOCK_SEQPACKET socket, the spawner
starts the command, closes its copies of the pipe ends and answers with the pid, then with the
exit status once it has reaped the command. The engine keeps reading the pipes and signals the
command's process group itself (SIGTERM, SIGKILL). The spawner leads its own session (a ^C at
the terminal reaches the engine, which stops the commands as it always does), and exits when
the engine's end of the socket closes (the commands keep running, as they would have without
it).

Requests and answers are `marshal`led tuples. Answers come in batches (one message per turn
of the spawner's loop): ("r", 0, its pid) ready (the engine sends nothing before; until then
it starts commands itself), ("s", request, pid) started, ("o", request, (errno, strerror[,
filename])) it could not start (what Popen raised), ("x", pid, wait status) exited.

This module imports little beyond the standard library's core so that the spawner is ready
soon; until it says so, the engine starts commands itself."""

import marshal
import os
import sys

MAX_REQUEST = 1 << 17  # bigger requests (a huge checkpoint in the environment) spawn directly
MAX_BATCH = 128  # answers per message: with error texts cut at 200 bytes, a message stays < 32 KiB
_ERROR_TEXT_MAX = 200
ANSWER_MAX = 1 << 16  # the engine's receive buffer


def spawn(argv, cwd, env, stdin, stdout, stderr, keep=()):
    """Start a child in a new session; returns its Popen (keep it until the child is reaped,
    and set its `returncode` then: a Popen dropped unreaped is polled, and so reaped, by the
    next one). `env`: `KEY=value` bytes, or None for ours. Raises what Popen raises."""
    import subprocess

    return subprocess.Popen(
        argv, cwd=cwd, env=None if env is None else dict(e.split(b"=", 1) for e in env),
        stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True, pass_fds=keep,
        restore_signals=True, start_new_session=True)


def error_answer(e):
    """What an OSError from spawn() is sent as: OSError(*it) is the same error."""
    text = (e.strerror or str(e))[:_ERROR_TEXT_MAX]
    if e.filename is not None:
        return (e.errno or 0, text, os.fsdecode(e.filename)[:_ERROR_TEXT_MAX])
    return (e.errno or 0, text)


# -- the spawner process ------------------------------------------------------------------------------

def _noop(signum, frame):
    pass


def serve(sock_fd):
    import select
    import signal
    import socket

    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, _noop)
    devnull = os.open(os.devnull, os.O_RDWR)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    anc_size = socket.CMSG_SPACE(2 * 4)
    recv_flags = socket.MSG_DONTWAIT | getattr(socket, "MSG_CMSG_CLOEXEC", 0)
    running = {}  # pid -> its Popen, until reaped
    out = [("r", 0, os.getpid())]  # ready

    def flush():
        while out:
            batch = out[:MAX_BATCH]
            del out[:MAX_BATCH]
            sock.send(marshal.dumps(batch))  # blocking: the engine reads on every wake

    flush()
    while True:
        poller.poll()
        try:
            os.read(wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                msg, anc, _flags, _addr = sock.recvmsg(MAX_REQUEST, anc_size, recv_flags)
            except BlockingIOError:
                break
            fds = []
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += memoryview(data[: len(data) - len(data) % 4]).cast("i").tolist()
            if not msg:
                for fd in fds:
                    os.close(fd)
                return  # the engine closed its end
            try:
                request, argv, cwd, env = marshal.loads(msg)
                if len(fds) != 2:
                    raise OSError(22, "expected two pipe ends")
                try:
                    proc = spawn(argv, cwd, env, devnull, fds[0], fds[1])
                    running[proc.pid] = proc
                    out.append(("s", request, proc.pid))
                except OSError as e:
                    out.append(("o", request, error_answer(e)))
                except Exception as e:  # noqa: BLE001 - subprocess.SubprocessError: told, not fatal
                    out.append(("o", request, (0, str(e)[:_ERROR_TEXT_MAX])))
            finally:
                for fd in fds:
                    os.close(fd)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = running.pop(pid, None)
            if proc is not None:
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait for it
            out.append(("x", pid, status))
        flush()


if __name__ == "__main__":
    try:
        serve(int(sys.argv[1]))
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
