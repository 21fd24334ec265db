"""Starting the shell kind's commands, and the spawner process that does it off the loop.

`spawn()` starts a command the way `subprocess` does (vfork + exec through
`_posixsubprocess.fork_exec`: in a new session, stdin from /dev/null, fds closed, SIGPIPE & co.
back to their defaults) and reports a failed exec as `subprocess` does. Even with vfork that
call waits for the child's exec: ~0.15 ms on an idle machine, 0.5-3 ms measured on the
engine's loop with the DAG benchmark's 5 commands, the SQLite thread and the children sharing
two cores.

So the engine runs it in a small separate process, the spawner (this file run as a script by
`python -I -S`, standard library only): the engine sends a request (argv, where to look for the
program, cwd, environment) with the two pipe ends for stdout and stderr over a Unix
SOCK_SEQPACKET socket, the spawner starts the command, closes its copies of the pipe ends and
answers with the pid, then with the exit status once it has reaped the command. The engine
keeps reading the pipes and signals the command's process group itself (SIGTERM, SIGKILL).
The spawner leads its own session (a ^C at the terminal reaches the engine, which stops the
commands as it always does), and exits when the engine's end of the socket closes (the
commands keep running, as they would have without it).

Requests and answers are `marshal`led tuples. Answers come in batches (one message per turn
of the spawner's loop): ("r", 0, its pid) ready (the engine sends nothing before; until then
it starts commands itself), ("s", request, pid) started, ("e", request, data) the exec failed
(what `subprocess`'s error pipe said), ("o", request, (errno, strerror)) the fork failed,
("x", pid, wait status) exited.

This module imports nothing beyond the standard library's core so that the spawner is ready
soon (20-30 ms here); until it says so, the engine starts commands itself."""

import marshal
import os
import sys

try:
    from _posixsubprocess import fork_exec as _fork_exec  # what subprocess.Popen calls
except ImportError:  # pragma: no cover - not POSIX
    _fork_exec = None
if not (3, 11) <= sys.version_info[:2] <= (3, 13):  # pragma: no cover - signature checked for these
    _fork_exec = None

MAX_REQUEST = 1 << 17  # bigger requests (a huge checkpoint in the environment) spawn directly
MAX_BATCH = 128  # answers per message: with error data cut at 200 bytes, a message stays < 32 KiB
_ERROR_DATA_MAX = 200  # what the error pipe says is ~20 bytes ("OSError:2:noexec")
ANSWER_MAX = 1 << 16  # the engine's receive buffer


def fork_exec_usable() -> bool:
    return _fork_exec is not None


class ExecFailed(Exception):
    """The child could not exec: `data` is what it wrote on subprocess's error pipe."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.data = data


def spawn(argv, executables, cwd, env, stdin, stdout, stderr, keep=()):
    """Start a child in a new session; returns its pid. Raises OSError if the fork fails and
    ExecFailed if the exec does (the child has then exited and been reaped)."""
    errpipe_read, errpipe_write = os.pipe()
    low = []
    while errpipe_write < 3:  # it must not land on the child's 0, 1 or 2
        low.append(errpipe_write)
        errpipe_write = os.dup(errpipe_write)
    for fd in low:
        os.close(fd)
    try:
        try:
            pid = _fork_exec(
                argv, executables, True, tuple(sorted({errpipe_write, *keep})), cwd, env,
                stdin, -1, -1, stdout, -1, stderr,
                errpipe_read, errpipe_write,
                True, True,  # restore_signals (SIGPIPE & co. back to default), start_new_session
                -1, None, None, None, -1,  # process_group, gid, extra groups, uid, umask
                None, True,  # preexec_fn, allow vfork
            )
        finally:
            os.close(errpipe_write)
        failure = b""
        while True:  # vfork: the child has exec'd by now (EOF) or written why it could not
            part = os.read(errpipe_read, 50000)
            failure += part
            if not part or len(failure) > 50000:
                break
    finally:
        os.close(errpipe_read)
    if failure:
        try:
            os.waitpid(pid, 0)  # it has exited already (status 255)
        except ChildProcessError:
            pass
        raise ExecFailed(failure)
    return pid


def exception_for(data, program, cwd):
    """The exception subprocess.Popen raises for what a child wrote on its error pipe."""
    import builtins
    import subprocess

    try:
        name, hex_errno, msg = data.split(b":", 2)
        text = msg.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {data!r}")
    exc_type = getattr(builtins, name.decode("ascii", "replace"), subprocess.SubprocessError)
    if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
        exc_type = subprocess.SubprocessError
    if issubclass(exc_type, OSError) and hex_errno:
        errno_num = int(hex_errno, 16)
        exec_never_called = text == "noexec"
        filename = cwd if exec_never_called else program
        if errno_num != 0:
            text = os.strerror(errno_num)
        elif exec_never_called:
            text = ""
        return exc_type(errno_num, text, filename)
    return exc_type(text)


# -- the spawner process ------------------------------------------------------------------------------

def _noop(signum, frame):
    pass


def serve(sock_fd):
    import _signal
    import _socket
    import select

    sock = _socket.socket(fileno=sock_fd)
    sock.setblocking(True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signal.signal(_signal.SIGCHLD, _noop)
    devnull = os.open(os.devnull, os.O_RDWR)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    anc_size = _socket.CMSG_SPACE(2 * 4)
    recv_flags = _socket.MSG_DONTWAIT | getattr(_socket, "MSG_CMSG_CLOEXEC", 0)
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
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += memoryview(data[: len(data) - len(data) % 4]).cast("i").tolist()
            if not msg:
                for fd in fds:
                    os.close(fd)
                return  # the engine closed its end
            try:
                request, argv, executables, cwd, env = marshal.loads(msg)
                if len(fds) != 2:
                    raise OSError(22, "expected two pipe ends")
                try:
                    pid = spawn(argv, executables, cwd, env, devnull, fds[0], fds[1])
                    out.append(("s", request, pid))
                except ExecFailed as e:
                    out.append(("e", request, e.data[:_ERROR_DATA_MAX]))
                except OSError as e:
                    out.append(("o", request, (e.errno or 0, e.strerror or str(e))))
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
            out.append(("x", pid, status))
        flush()


if __name__ == "__main__":
    try:
        serve(int(sys.argv[1]))
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
