"""Process handling for the swarm benchmark: spawn, watch, measure, kill.

Each client runs in its own process and process group. While a transfer
runs, every watched process is sampled every ~50 ms (RssAnon and RssFile
from /proc/<pid>/status, peaks kept); exits are seen at once through a
pidfd and reaped with wait4, which gives the exact user+sys CPU time of a
process that ends by itself. For a process that is stopped from outside
(a seeder, transmission-cli), CPU is read from /proc/<pid>/stat at the
start and end of the measured window.
"""

import os
import select
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.05


class Proc:
    """One client process with its logs and measurements."""

    def __init__(self, tag, argv, logdir, cwd=None, env=None):
        self.tag = tag
        self.argv = [str(a) for a in argv]
        self.out_path = os.path.join(logdir, tag + ".out")
        self.err_path = os.path.join(logdir, tag + ".err")
        with open(os.path.join(logdir, tag + ".cmd"), "w") as f:
            f.write(" ".join(self.argv) + "\n")
        out = open(self.out_path, "wb")
        err = open(self.err_path, "wb")
        self.t_start = time.monotonic()
        full_env = None if env is None else {**os.environ, **env}
        self.p = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, cwd=cwd, env=full_env,
                                  start_new_session=True)
        out.close()
        err.close()
        self.pid = self.p.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.exit_code = None
        self.rusage = None
        self.t_exit = None
        self.peak_anon = 0
        self.peak_file = 0

    def alive(self):
        return self.exit_code is None

    def sample(self):
        if not self.alive():
            return
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak_anon = max(self.peak_anon, int(line.split()[1]) * 1024)
                    elif line.startswith("RssFile:"):
                        self.peak_file = max(self.peak_file, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            pass

    def reap(self):
        """Collects the exit status and rusage if the process has ended."""
        if not self.alive():
            return True
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return False
        self.t_exit = time.monotonic()
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        self.p.returncode = self.exit_code
        os.close(self.pidfd)
        return True

    def cpu_now(self):
        """user+sys seconds so far (all threads), from /proc/<pid>/stat."""
        if not self.alive():
            return self.cpu_total()
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError, IndexError):
            return float("nan")

    def cpu_now_split(self):
        """(user, sys) seconds so far (all threads): /proc/<pid>/stat while
        it runs, wait4's rusage once it ended."""
        if not self.alive():
            return self.cpu_split()
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
        except (OSError, ValueError, IndexError):
            return float("nan"), float("nan")

    def cpu_total(self):
        if self.rusage is not None:
            return self.rusage.ru_utime + self.rusage.ru_stime
        return self.cpu_now()

    def cpu_split(self):
        """(user, sys) seconds of the ended process (all threads, from
        wait4's rusage); NaN while it runs."""
        if self.rusage is not None:
            return self.rusage.ru_utime, self.rusage.ru_stime
        return float("nan"), float("nan")

    def output(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=25):
        try:
            with open(self.err_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return lines[-n:]
        except OSError:
            return []

    def kill(self, grace=3.0):
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self.reap():
                select.select([self.pidfd], [], [], 0.05)
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while not self.reap():
                time.sleep(0.01)
        else:
            # The leader is gone; make sure nothing it left behind lives on.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Watch:
    """The set of processes of one measurement."""

    def __init__(self):
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def tick(self, timeout=SAMPLE_S):
        for p in self.procs:
            p.sample()
        fds = [p.pidfd for p in self.procs if p.alive()]
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)
        for p in self.procs:
            p.reap()

    def until(self, cond, deadline):
        """Ticks until cond() is true (returns True) or the deadline passes."""
        while True:
            if cond():
                return True
            if time.monotonic() > deadline:
                return False
            self.tick()

    def kill_all(self):
        for p in reversed(self.procs):
            p.kill()


def run_timed(argv, logdir, tag, timeout):
    """Runs one command to completion; returns (exit_code, wall_s, cpu_s, proc)."""
    w = Watch()
    p = w.add(Proc(tag, argv, logdir))
    ok = w.until(lambda: not p.alive(), time.monotonic() + timeout)
    if not ok:
        p.kill()
        return None, float("nan"), float("nan"), p
    return p.exit_code, p.t_exit - p.t_start, p.cpu_total(), p


def port_listening(port):
    """True if some socket listens on TCP `port` (IPv4 or IPv6)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False
