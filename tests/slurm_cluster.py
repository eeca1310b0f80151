"""A real, private Slurm cluster for the tests and the benchmarks: munged, slurmctld and one
slurmd, as background processes (no systemd), with their own configuration, spool, state and
munge socket in one folder, listening on 127.0.0.1 only.

Needs root and Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and ``munge`` (.ci/run
installs them). Two fake GPUs: a ``gpu`` gres backed by device nodes made with mknod. Two
partitions: ``main`` (the default) and ``urgent``, whose jobs preempt main's by requeueing them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional

NODE = "mlpnode"
GPUS = 2
CPUS = 16  # more than the machine has (config_overrides): versions mostly sleep


def missing_tools() -> List[str]:
    return [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol") if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """One node, started by :meth:`start`, ended by :meth:`stop` (its jobs cancelled first:
    a slurmd killed leaves its jobs' slurmstepd running)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.processes: List[subprocess.Popen] = []

    @property
    def env(self) -> Dict[str, str]:
        """The environment a Slurm command or the daemon needs to reach this cluster: SLURM_CONF,
        and none of the SLURM_* variables a test run inside a job would inherit."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def start(self) -> "SlurmCluster":
        folder = self.folder
        for name in ("munge", "spool", "state", "dev"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
        os.chmod(folder / "munge", 0o755)  # munged refuses a socket folder others may write
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        for index in range(GPUS):
            device = folder / "dev" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(195, index))
        socket_path = folder / "munge" / "munge.socket"
        ctld_port, node_port = _free_port(), _free_port()
        self.conf.write_text(
            textwrap.dedent(
                f"""\
                ClusterName=mlptest
                SlurmctldHost={socket.gethostname()}(127.0.0.1)
                MailProg=/bin/true
                SlurmctldPort={ctld_port}
                SlurmdPort={node_port}
                CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
                AuthType=auth/munge
                AuthInfo=socket={socket_path}
                CredType=cred/munge
                SlurmUser=root
                SlurmdUser=root
                StateSaveLocation={folder}/state
                SlurmdSpoolDir={folder}/spool
                SlurmctldPidFile={folder}/slurmctld.pid
                SlurmdPidFile={folder}/slurmd.pid
                SlurmctldLogFile={folder}/slurmctld.log
                SlurmdLogFile={folder}/slurmd.log
                SlurmdParameters=config_overrides
                ProctrackType=proctrack/linuxproc
                TaskPlugin=task/none
                SelectType=select/cons_tres
                SelectTypeParameters=CR_Core
                GresTypes=gpu
                ReturnToService=2
                MpiDefault=none
                AccountingStorageType=accounting_storage/none
                JobAcctGatherType=jobacct_gather/none
                JobCompType=jobcomp/none
                SchedulerType=sched/builtin
                PreemptType=preempt/partition_prio
                PreemptMode=REQUEUE
                KillWait=5
                MinJobAge=300
                InactiveLimit=0
                SlurmctldTimeout=30
                SlurmdTimeout=30
                MessageTimeout=10
                NodeName={NODE} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory=8000 Gres=gpu:{GPUS} State=UNKNOWN
                PartitionName=main Nodes={NODE} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 OverSubscribe=NO
                PartitionName=urgent Nodes={NODE} MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
                """
            ),
            encoding="utf-8",
        )
        (folder / "gres.conf").write_text(
            f"NodeName={NODE} Name=gpu File={folder}/dev/nvidia[0-{GPUS - 1}]\n", encoding="utf-8"
        )
        env = self.env
        self._background(
            ["munged", "-F", f"--socket={socket_path}", f"--key-file={key}", f"--pid-file={folder}/munge/munged.pid",
             f"--log-file={folder}/munge/munged.log", f"--seed-file={folder}/munge/munged.seed", "--force"],
            env,
        )
        _wait_for(lambda: socket_path.exists(), 20, "munged's socket")
        self._background(["slurmctld", "-D", "-i", "-f", str(self.conf)], env, "slurmctld")
        _wait_for(lambda: self._answers(["scontrol", "ping"], "UP"), 30, "slurmctld")
        self._background(["slurmd", "-D", "-N", NODE, "-f", str(self.conf)], env, "slurmd")
        _wait_for(lambda: self._answers(["sinfo", "-h", "-N", "-o", "%T"], "idle"), 60, "the node to be idle")
        return self

    def _background(self, command: List[str], env: Dict[str, str], log: Optional[str] = None) -> None:
        out = open(self.folder / f"{log or command[0]}.out", "ab")
        self.processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        out.close()

    def _answers(self, command: List[str], expected: str) -> bool:
        for process in self.processes:
            if process.poll() is not None:
                log = (self.folder / f"{Path(process.args[0]).name}.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{process.args[0]} ended ({process.returncode}): {log}")
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=20)
        return done.returncode == 0 and expected in done.stdout

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def jobs(self) -> List[Dict[str, str]]:
        """Every job Slurm still knows, ended ones included: id, name, state, restarts."""
        done = self.command("squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%R")
        jobs = []
        for line in done.stdout.splitlines():
            job_id, name, state, reason = line.split("|", 3)
            jobs.append({"id": job_id, "name": name, "state": state, "reason": reason})
        return jobs

    def resume_node(self) -> None:
        """Bring the node back from DOWN: refused while its jobs are still completing, so tried
        until it is taken."""
        _wait_for(lambda: self.command("scontrol", "update", f"nodename={NODE}", "state=resume", check=False).returncode == 0
                  or "idle" in self.command("sinfo", "-h", "-N", "-o", "%T").stdout, 60, "the node to come back")

    def clear(self) -> None:
        """Cancel every job, and wait until none runs or waits; the node is made idle again."""
        self.command("scancel", "--user=root", check=False)
        self.command("scontrol", "update", f"nodename={NODE}", "state=resume", check=False)
        _wait_for(lambda: not any(job["state"] in ("RUNNING", "COMPLETING", "PENDING") for job in self.jobs()), 60, "the jobs to end")

    def stop(self) -> None:
        try:
            self.command("scancel", "--user=root", check=False)
            _wait_for(lambda: not any(job["state"] in ("RUNNING", "COMPLETING") for job in self.jobs()), 30, "the jobs to end")
        except Exception:  # noqa: BLE001 - the daemons go whatever their jobs did
            pass
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.processes.clear()


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")
