"""Two `invoke tune` workers share one study on a real PostgreSQL server that this test starts
(a private cluster in a temporary folder, on 127.0.0.1 and a free port). Skipped, with the
reason, where the server binaries or the driver are missing."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from yft.data.sample import make_sample_dataset
from yft.project import ROOT, load_exp
from yft.train.tune import tune_root

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")

from test_tune import TINY  # noqa: E402  (one tiny training profile for both tune tests)


def server_binaries():
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True) + [""]:
        initdb = shutil.which("initdb", path=folder or None)
        pg_ctl = shutil.which("pg_ctl", path=folder or None)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://yft@127.0.0.1:PORT/postgres on a throwaway cluster, stopped afterwards. The
    server refuses to run as root, so as root it runs as the `postgres` system user."""
    binaries = server_binaries()
    if not binaries:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    initdb, pg_ctl = binaries
    as_user = []
    if os.geteuid() == 0:
        try:
            import pwd

            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="yft-pg-"))
    if as_user:
        os.chown(folder, account.pw_uid, account.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, log = folder / "data", folder / "server.log"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "yft", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not create a PostgreSQL cluster: {err}")
    if started.returncode:
        reason = log.read_text()[-500:] if log.is_file() else started.stderr
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {reason}")
    try:
        yield f"postgresql://yft@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=120
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, postgres_url):
    exp = load_exp(None, [f"data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}"])
    make_sample_dataset(exp, counts=(6, 3, 0), seed=6)
    sets = [f"--set={s}" for s in TINY + [f"data_dir={exp.data_dir}", f"output_dir={exp.output_dir}"]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "invoke",
                "tune",
                f"--storage={postgres_url}",
                "--study=pg",
                "--trials=4",
                "--epochs=2",
                "--iters=1",
                f"--seed={seed}",
                "--device=cpu",
                *sets,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for worker, text in zip(workers, outputs):
        assert worker.returncode == 0, text

    study = optuna.load_study(
        study_name="pg", storage=postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}, [(t.number, t.state) for t in trials]
    # Each worker stops once the study holds 4 finished trials; both may have had one running then.
    assert 4 <= len(trials) <= 5
    # No trial lost or run twice: every trial was run by exactly one worker, in its own folder,
    # and the workers' progress lines name each trial once.
    by_worker = {w.pid: [t.number for t in trials if t.user_attrs["pid"] == w.pid] for w in workers}
    assert sorted(sum(by_worker.values(), [])) == list(range(len(trials)))
    assert all(by_worker.values()), f"one worker ran no trial: {by_worker}"
    for worker, text in zip(workers, outputs):
        printed = sorted(int(line.split()[1]) for line in text.splitlines() if line.startswith("trial "))
        assert printed == sorted(by_worker[worker.pid]), text
    folders = {t.user_attrs["run_dir"] for t in trials}
    assert len(folders) == len(trials)
    assert folders == {str(p) for p in (tune_root(exp) / "pg").glob("trial_*")}
    assert all((Path(f) / "history.json").is_file() for f in folders)
