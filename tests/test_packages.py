"""The Debian packages, installed with `dpkg -i` into fresh bookworm roots with no network.

Each root is a copy of a cached ``debootstrap --variant=minbase --include=python3,systemd``
(tests/debian_root.py); every command runs in it inside ``unshare --net`` so nothing can be
fetched. The packages are built once per run by `scripts/package`.

What is tested, and how:
- amd64: install, the command, `version --json`, `config check` on the shipped example, the
  user and group (in dialout), /etc/watchpost's modes, the units enabled and conditioned on a
  config, the conffile; then update, a failing update that rolls back by itself, a downgrade
  by hand, removal and purge, with the store and the alarm state checked at every step.
- arm64 (under qemu-user emulation): install, `version --json`, `config check`, and
  `anomaly score` on a CSV, whose scores must equal the host's: numpy and LiteRT load and
  compute on aarch64.

The update and rollback are tested twice on amd64:
- in a chroot, where systemd cannot run: the daemon is started by hand as the unit would
  start it (same command, user watchpost, group dialout), and the guard's `watch` is run by
  hand with ``--restart-command`` pointing at a script that stops and starts that daemon.
  This covers the data: store, alarm state, conffile, remove and purge, downgrade by hand.
- booted with systemd as PID 1 (systemd-nspawn, `Booted`): the units as shipped (hardening
  included), the postinst enabling them and starting the guard, READY through sd_notify,
  `systemctl restart`, Restart=on-failure's loop counted through NRestarts, the rollback.

Not tested: the guard resuming a trial after a reboot (its unit's ConditionPathExists at
boot), the firstboot unit with a bundle, arm64 updates (the same scripts as on amd64; arm64
is only installed and run), armhf (built, not installed: no armhf root is made), a real
Raspberry Pi.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debian_root import CACHE, Booted, Root, missing_tools
from watchpost.models import SHIPPED_MODEL, shipped_model_path

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.packages, pytest.mark.slow]

BASE_VERSION = "0.1.0"  # tests stamp their own versions on top, see `builds`
EXAMPLE = "/usr/share/doc/watchpost/examples/demo/gateway.toml"
CONFIRM_WITHIN_S = 25  # the conffile's setting in the tests: a broken build waits this long

GATEWAY_TOML = """\
[gateway]
site = "pkg-test"
id = "gw-pkg"

[uplink]
broker = "mqtt://127.0.0.1:1883"

[store]
path = "/var/lib/watchpost/buffer.db"

[[buses]]
type = "modbus_tcp"
name = "plant"
host = "127.0.0.1"
port = 15020

[[devices]]
name = "meter"
bus = "plant"
unit = 1

[[devices.points]]
name = "ch4"
unit = "%CH4"
table = "holding"
address = 0
alarms = [{ kind = "high", level = "alarm", threshold = 1.0 }]
"""

# Stands in for `systemctl restart watchpost` where systemd cannot run: the unit's command,
# as the unit's user, with the unit's runtime folder; the daemon's output goes to a log file.
RESTART_BY_HAND = """\
#!/bin/sh
if [ -f /run/wp.pid ]; then
    pid=$(cat /run/wp.pid)
    kill "$pid" 2>/dev/null || true
    n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
fi
install -d -m 0750 -o watchpost -g watchpost /run/watchpost
setpriv --reuid=watchpost --regid=watchpost --init-groups \\
    /usr/bin/watchpost run --config /etc/watchpost/gateway.toml >>/var/log/watchpost.log 2>&1 &
echo $! > /run/wp.pid
"""

# Waits (bounded) until the daemon answers as VERSION and has published a health message.
WAIT_UP = """\
up() {
    n=0
    while [ $n -lt 60 ]; do
        if watchpost status --json > /tmp/status.json 2>/dev/null && python3 -c '
import json, sys
s = json.load(open("/tmp/status.json"))
sys.exit(0 if s.get("version") == sys.argv[1] and s["uplink"]["health_sent"] else 1)' "$1"
        then return 0; fi
        sleep 0.5; n=$((n+1))
    done
    echo "daemon $1 did not come up"; cat /var/log/watchpost.log; return 1
}
"""

# Stops the daemon the way systemd would (SIGTERM, then wait), at the end of each phase.
STOP = """\
pid=$(cat /run/wp.pid); kill "$pid" 2>/dev/null || true
n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
"""

# The retained `health` on the broker, read with the paho that the package bundles.
RETAINED_HEALTH = """\
python3 -c '
import sys
sys.path.insert(0, "/usr/lib/watchpost/current/lib")
import paho.mqtt.subscribe as subscribe
topic = "watchpost/v1/pkg-test/gw-pkg/health"
print(subscribe.simple(topic, hostname="127.0.0.1", retained=True).payload.decode())'
"""

STORE_STATE = """\
python3 -c '
import json, sqlite3
db = sqlite3.connect("/var/lib/watchpost/buffer.db")
schema = db.execute("SELECT value FROM meta WHERE key = ?", ("schema_version",)).fetchone()
streams = dict(db.execute("SELECT stream, last_seq FROM streams"))
print(json.dumps({"streams": streams, "schema": schema[0]}))'
"""


def version(tag: str) -> str:
    return f"{BASE_VERSION}+{tag}"


def tools_or_skip(arch: str) -> None:
    reason = missing_tools(arch)
    if reason is not None:
        pytest.skip(f"Debian package tests for {arch}: {reason}")


def build(arch: str, out: Path, stamp: str, source: Path = REPO) -> Path:
    """`scripts/package` of ``source`` for ``arch``, stamped with version ``stamp``."""
    result = subprocess.run(
        [
            str(source / "scripts/package"),
            "--arch",
            arch,
            "--version",
            stamp,
            "--out",
            str(out),
            "--compression",
            "gzip",
            "--deps-cache",
            str(CACHE / "deps"),
        ],
        env={"PYTHON": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    deb = out / f"watchpost-gateway_{stamp}_{arch}.deb"
    assert deb.exists(), result.stdout
    return deb


def broken_source(dest: Path) -> Path:
    """A copy of the repository whose daemon exits at once: a build that fails at start."""
    ignore = shutil.ignore_patterns(".venv", ".git", "dist", "__pycache__", ".*_cache", "var")
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    app = dest / "gateway/app.py"
    text = app.read_text()
    marker = "def _run(args: argparse.Namespace) -> int:\n"
    assert marker in text
    app.write_text(text.replace(marker, marker + "    raise SystemExit(1)  # broken on purpose\n"))
    return dest


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Builds made lazily, once per run: {"amd64-t1": deb, ...}."""
    out = tmp_path_factory.mktemp("debs")

    class Builds(dict[str, Path]):
        def __missing__(self, key: str) -> Path:
            # dict calls this on every lookup of a missing key and does not keep the result:
            # keep it here, or each test builds the same package again
            arch, tag = key.split("-", 1)
            if tag == "broken":
                source = broken_source(tmp_path_factory.mktemp("broken") / "src")
                self[key] = build(arch, out, version(tag), source)
            else:
                self[key] = build(arch, out, version(tag))
            return self[key]

    return Builds()


def fresh(arch: str, tmp_path: Path) -> Iterator[Root]:
    tools_or_skip(arch)
    root = Root.fresh(arch, tmp_path / f"root-{arch}")
    try:
        yield root
    finally:
        root.remove()


@pytest.fixture
def amd64_root(tmp_path: Path) -> Iterator[Root]:
    yield from fresh("amd64", tmp_path)


@pytest.fixture
def arm64_root(tmp_path: Path) -> Iterator[Root]:
    yield from fresh("arm64", tmp_path)


@pytest.fixture
def arm64_deb(debs: dict[str, Path]) -> Path:
    """The arm64 build, made before the test asks for its root: on a cold cache that root is
    still being made in the background (minutes under qemu), and the build need not wait."""
    tools_or_skip("arm64")
    return debs["arm64-t1"]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def install_and_check(root: Root, deb: Path, stamp: str) -> dict[str, object]:
    """dpkg -i with no network; the command, its version and the shipped example."""
    root.put(deb, f"/tmp/{deb.name}")
    out = ok(
        root.sh(
            f"dpkg -i /tmp/{deb.name} >/tmp/dpkg.log 2>&1 || {{ cat /tmp/dpkg.log; exit 1; }}\n"
            "command -v watchpost\n"
            "watchpost --version\n"
            f"watchpost config check {EXAMPLE}\n"
            "echo '---'; watchpost version --json\n"
        )
    )
    head, _, info = out.partition("---\n")
    assert head.splitlines()[:3] == ["/usr/bin/watchpost", f"watchpost {stamp}", "ok"], out
    parsed: dict[str, object] = json.loads(info)
    return parsed


def test_amd64_installs_with_no_network(amd64_root: Root, debs: dict[str, Path]) -> None:
    root, stamp = amd64_root, version("t1")
    info = install_and_check(root, debs["amd64-t1"], stamp)
    assert info["version"] == stamp
    assert info["architecture"] == "amd64"
    libraries = info["libraries"]
    assert isinstance(libraries, dict)
    assert libraries["tflite-runtime"] == "2.14.0"
    assert libraries["numpy"].startswith("1.")
    card = json.loads(shipped_model_path().with_suffix(".json").read_text())
    assert info["model"] == {"id": SHIPPED_MODEL, "sha256": card["sha256"]}
    out = ok(
        root.sh(
            "id watchpost\n"
            "stat -c '%a %U %G' /etc/watchpost /var/lib/watchpost\n"
            "ls /etc/systemd/system/multi-user.target.wants/\n"
            "grep -h ConditionPathExists /lib/systemd/system/watchpost.service\n"
            "readlink /usr/lib/watchpost/current\n"
            "ls /usr/share/watchpost/schemas/ | head -1\n"
            "dpkg-query -W -f='${Conffiles}\\n' watchpost-gateway\n"
            "LANG=zh_CN.UTF-8 watchpost --help | head -1\n"  # the compiled Chinese catalogue
        )
    )
    lines = out.splitlines()
    assert "dialout" in lines[0], out
    assert lines[1:3] == ["750 root watchpost", "750 watchpost watchpost"], out
    for unit in ("watchpost.service", "watchpost-firstboot.service"):
        assert unit in out, f"{unit} not enabled:\n{out}"
    assert "ConditionPathExists=/etc/watchpost/gateway.toml" in out
    assert f"versions/{stamp}" in out
    assert "alarms.json" in out  # the schemas are reachable through the running tree
    assert "/etc/watchpost/update.toml" in out
    assert lines[-1].startswith("用法：watchpost"), out


def test_amd64_updates_roll_back_and_keep_the_data(amd64_root: Root, debs: dict[str, Path]) -> None:
    """Update, a failing update that rolls back by itself, a downgrade, removal, purge."""
    root = amd64_root
    old, new, broken = version("t1"), version("t2"), version("broken")
    packages = {tag: debs[f"amd64-{tag}"] for tag in ("t1", "t2", "broken")}
    for deb in packages.values():
        root.put(deb, f"/tmp/{deb.name}")
    hand = root.path / "usr/local/sbin/restart-by-hand"
    hand.parent.mkdir(parents=True, exist_ok=True)
    hand.write_text(RESTART_BY_HAND)
    hand.chmod(0o755)

    def dpkg_i(tag: str) -> str:
        name = packages[tag].name
        return f"dpkg -i /tmp/{name} >>/tmp/dpkg.log 2>&1 || {{ cat /tmp/dpkg.log; exit 1; }}\n"

    def phase(script: str) -> list[str]:
        """Run with a broker and the daemon started by hand; the parts after each '---'."""
        started = "/usr/local/sbin/restart-by-hand\n"
        result = root.sh(WAIT_UP + started + script + STOP, timeout=240, broker=True)
        return ok(result).split("---\n")

    guard = (
        "set +e; /usr/lib/watchpost/update-guard watch "
        "--restart-command /usr/local/sbin/restart-by-hand; echo guard=$?; set -e\n"
    )
    state = "echo '---'; watchpost alarms --json; echo '---'; " + STORE_STATE

    # 1. installed and provisioned (as firstboot would), the daemon up, an alarm shelved
    ok(
        root.sh(
            dpkg_i("t1") + f"cat > /etc/watchpost/gateway.toml <<'EOF'\n{GATEWAY_TOML}EOF\n"
            "chown root:watchpost /etc/watchpost/gateway.toml\n"
            "chmod 0640 /etc/watchpost/gateway.toml\n"
            f"sed -i 's/^confirm_within_s = .*/confirm_within_s = {CONFIRM_WITHIN_S}/' "
            "/etc/watchpost/update.toml\n"
        )
    )
    _, alarms, store = phase(
        f"up {old}\n"
        "watchpost alarms shelve ch4/high_alarm --minutes 300 --reason 'sensor swap' >/dev/null\n"
        # the housekeeper saves the alarm state within a second of a change
        "n=0; until grep -q ch4/high_alarm /var/lib/watchpost/alarms.json 2>/dev/null; do\n"
        "  n=$((n+1)); [ $n -lt 50 ] || exit 1; sleep 0.2; done\n" + state
    )
    assert "ch4/high_alarm" in alarms, alarms
    before = json.loads(store)
    assert before["streams"]["alarms"] >= 1, store

    # 2. update: the guard restarts the daemon on the new version and confirms it
    head, alarms, store = phase(
        f"up {old}\n" + dpkg_i("t2") + guard + f"up {new}\nwatchpost version --json\n" + state
    )
    assert "guard=0" in head, head
    info = json.loads(head.split("guard=0\n", 1)[1])
    assert info["version"] == new
    assert info["update"]["previous"] == old
    assert info["update"]["confirmed"] == new
    assert "ch4/high_alarm" in alarms, "the shelved alarm did not survive the update"
    after_update = json.loads(store)
    assert after_update["streams"]["alarms"] >= before["streams"]["alarms"]

    # 3. an update whose daemon exits at start: back to the previous version by itself
    started = time.monotonic()
    head, alarms, store = phase(
        f"up {new}\n"
        + dpkg_i("broken")
        + guard
        + f"up {new}\n"
        + RETAINED_HEALTH
        + "watchpost status --json > /tmp/s.json\n"
        'python3 -c \'import json; print(json.dumps(json.load(open("/tmp/s.json"))'
        '["software"]))\'\n'
        "readlink /usr/lib/watchpost/current\n"
        "tail -n 3 /var/lib/watchpost-update/history.log\n"
        "grep -c 'did not come up after an update' /var/log/watchpost.log || true\n"
        "dpkg-query -W -f='${Version}\\n' watchpost-gateway\n" + state
    )
    took = time.monotonic() - started
    assert "guard=1" in head, head
    health, *lines = head.split("guard=1\n", 1)[1].splitlines()
    assert json.loads(health)["software"]["update"]["rolled_back_from"] == broken, health
    software = json.loads(lines[0])
    assert software["version"] == new
    assert software["update"]["rolled_back_from"] == broken
    assert "not up within" in software["update"]["rollback_reason"]
    assert lines[1] == f"versions/{new}"
    assert any(
        f"{broken} did not come up" in line and f"rolled back to {new}" in line for line in lines
    )
    assert int(lines[-2]) >= 1, "the restored daemon did not say so in its log"
    assert lines[-1] == broken  # dpkg still lists the package it unpacked: see the guide
    assert "ch4/high_alarm" in alarms, "the shelved alarm did not survive the rollback"
    after_rollback = json.loads(store)
    assert after_rollback["streams"]["alarms"] >= after_update["streams"]["alarms"]
    assert took < CONFIRM_WITHIN_S + 120

    # 4. a downgrade by hand to the first build works the same way; the conffile is kept
    head, alarms, store = phase(
        f"up {new}\n" + dpkg_i("t1") + guard + f"up {old}\n"
        "grep '^confirm_within_s' /etc/watchpost/update.toml\n"
        "ls /usr/lib/watchpost/versions/\n" + state
    )
    assert "guard=0" in head, head
    assert f"confirm_within_s = {CONFIRM_WITHIN_S}" in head, "the conffile was replaced"
    assert "ch4/high_alarm" in alarms
    assert json.loads(store)["streams"]["alarms"] >= after_rollback["streams"]["alarms"]

    # 5. remove keeps the config and the data; purge takes them
    out = ok(
        root.sh(
            "dpkg -r watchpost-gateway >/dev/null\n"
            "ls /etc/watchpost /var/lib/watchpost; ls /usr/lib/watchpost 2>&1 || true\n"
            "command -v watchpost || echo 'no command'\n"
            "echo '---'\n"
            "dpkg -P watchpost-gateway >/dev/null\n"
            "ls -d /etc/watchpost /var/lib/watchpost 2>&1 || true\n"
        )
    )
    removed, purged = out.split("---\n")
    for kept in ("gateway.toml", "buffer.db", "alarms.json"):
        assert kept in removed, removed
    assert "no command" in removed
    assert "versions" not in removed
    assert purged.count("No such file or directory") == 2, purged


def anomaly_csv(rows: int = 400) -> str:
    """Two smooth channels with a burst of noise near the end (250 calibration rows: what
    the shipped model that needs the most, generic-v6, needs: its window 62, drift lag 180
    and 8)."""
    lines = ["t,a,b"]
    for i in range(rows):
        a = 20 + 2 * math.sin(i / 9)
        b = 5 + math.cos(i / 13) + (3 * math.sin(i * 2.1) if 360 <= i < 380 else 0)
        lines.append(f"{i},{a:.4f},{b:.4f}")
    return "\n".join(lines) + "\n"


def test_arm64_installs_and_scores_with_litert(
    arm64_deb: Path, arm64_root: Root, tmp_path: Path
) -> None:
    """Under qemu-user emulation: numpy and LiteRT load on aarch64 and score as on the host."""
    root, stamp = arm64_root, version("t1")
    info = install_and_check(root, arm64_deb, stamp)
    assert info["architecture"] == "arm64"
    assert info["libraries"]["tflite-runtime"] == "2.14.0"
    csv = tmp_path / "small.csv"
    csv.write_text(anomaly_csv())
    root.put(csv, "/tmp/small.csv")
    score = ["anomaly", "score", "--time-column", "t", "--calibrate-rows", "250"]
    on_arm = ok(root.sh(f"uname -m; watchpost {' '.join(score)} /tmp/small.csv"))
    machine, *rows = on_arm.splitlines()
    assert machine == "aarch64"
    here = subprocess.run(
        [sys.executable, "-m", "watchpost", *score, str(csv)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(rows) == len(here) > 100
    scored = 0
    for arm, host in zip(rows, here, strict=True):
        arm_row, arm_score, arm_flag = arm.split(",")
        host_row, host_score, host_flag = host.split(",")
        assert (arm_row, arm_flag) == (host_row, host_flag)
        if host_score:
            scored += 1
            assert float(arm_score) == pytest.approx(float(host_score), rel=1e-3, abs=1e-4)
    assert scored > 100


# Waits (bounded, in the booted root) until no update is on trial any more.
TRIAL_OVER = """\
n=0
while [ -e /var/lib/watchpost-update/trial.json ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done
[ ! -e /var/lib/watchpost-update/trial.json ] || { echo 'trial still open'; exit 1; }
n=0
guard() { systemctl show -p ActiveState --value watchpost-update-guard; }
while [ "$(guard)" = activating ] && [ $n -lt 300 ]; do
    sleep 0.2; n=$((n+1))
done
"""


def test_amd64_under_systemd_update_and_rollback(amd64_root: Root, debs: dict[str, Path]) -> None:
    """The same with systemd as PID 1 (systemd-nspawn): the units as shipped, READY through
    sd_notify, the postinst starting the guard, `systemctl restart`, Restart=on-failure."""
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn is missing: scripts/setup installs systemd-container")
    root = amd64_root
    new, broken = version("t2"), version("broken")
    for tag in ("t1", "t2", "broken"):
        deb = debs[f"amd64-{tag}"]
        root.put(deb, f"/var/tmp/{tag}.deb")
    with Booted(root) as box:
        box.start_broker()
        out = ok(
            box.sh(
                "dpkg -i /var/tmp/t1.deb >/var/tmp/dpkg.log 2>&1 || cat /var/tmp/dpkg.log\n"
                "systemctl is-enabled watchpost\n"
                "systemctl show -p ConditionResult --value watchpost\n"
                f"cat > /etc/watchpost/gateway.toml <<'EOF'\n{GATEWAY_TOML}EOF\n"
                "chown root:watchpost /etc/watchpost/gateway.toml\n"
                "chmod 0640 /etc/watchpost/gateway.toml\n"
                f"sed -i 's/^confirm_within_s = .*/confirm_within_s = {CONFIRM_WITHIN_S}/' "
                "/etc/watchpost/update.toml\n"
                "systemctl start watchpost\n"  # returns once the daemon sent READY=1
                "systemctl is-active watchpost\n"
            )
        )
        assert out.splitlines() == ["enabled", "no", "active"], out  # no config: not started

        # an update: the postinst starts the guard, which restarts the daemon and confirms it
        out = ok(
            box.sh(
                "dpkg -i /var/tmp/t2.deb >>/var/tmp/dpkg.log 2>&1\n"
                + TRIAL_OVER
                + "cat /var/lib/watchpost-update/state.json\n"
                "watchpost status --json | python3 -c "
                "'import json, sys; print(json.load(sys.stdin)[\"version\"])'\n"
            )
        )
        *state, running = out.splitlines()
        assert json.loads("\n".join(state))["confirmed"] == new
        assert running == new

        # an update whose daemon exits at once: systemd restarts it, the guard gives it up
        out = ok(
            box.sh(
                "dpkg -i /var/tmp/broken.deb >>/var/tmp/dpkg.log 2>&1\n"
                + TRIAL_OVER
                + "readlink /usr/lib/watchpost/current\n"
                "systemctl is-active watchpost\n"
                "journalctl -u watchpost-update-guard --no-pager -o cat | grep 'rolled back'\n"
                "journalctl -u watchpost-update-guard --no-pager -o cat | grep 'running again'\n"
                "watchpost status --json | python3 -c "
                "'import json, sys; print(json.dumps(json.load(sys.stdin)[\"software\"]))'\n"
            )
        )
        link, active, said, again, software = out.splitlines()
        assert link == f"versions/{new}"
        assert active == "active"
        assert f"{broken} did not come up" in said
        assert again.endswith(f"{new} is running again"), again
        assert "restarted 3 times" in said  # Restart=on-failure's loop, seen through NRestarts
        assert json.loads(software)["update"]["rolled_back_from"] == broken
        print(f"rolled back under systemd: {said}")
