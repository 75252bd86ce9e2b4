"""``pymaster init``: the files several masters share, written once (CA, certificates, admin
config listing every master, join token, encryption key); a master started from a copy uses that
CA and token (its serving certificate is issued for its own address by the shared CA); the
--leader-elect flags and their checks."""

from __future__ import annotations

import shutil

import pytest
from master_fixtures import start_master

from pymaster.api import pki
from pymaster.api.clientconfig import load_config
from pymaster.app import MasterApp
from pymaster.leader import LeaderElectionConfig
from pymaster.main import build_parser, init_data_dir, leader_election, main
from pymaster.server.tls import ADMIN_CONFIG, PKI_DIR, TOKEN_FILE
from pymaster.store.encryption import KEY_FILE


def test_init_writes_the_shared_files_and_exits(tmp_path):
    data = tmp_path / "shared"
    assert main(["init", "--data-dir", str(data), "--tls-san", "m1.example,10.0.0.2",
                 "--server", "10.0.0.1:6443,10.0.0.2:6443"]) == 0
    for name in (f"{PKI_DIR}/ca.crt", f"{PKI_DIR}/ca.key", f"{PKI_DIR}/server.crt", ADMIN_CONFIG, TOKEN_FILE,
                 KEY_FILE):
        assert (data / name).is_file(), name
    config = load_config(data / ADMIN_CONFIG)
    assert config.servers == ["10.0.0.1:6443", "10.0.0.2:6443"]
    sans = pki.cert_info((data / PKI_DIR / "server.crt").read_bytes()).sans
    assert {"m1.example", "10.0.0.2", "pymaster"} <= set(sans)
    # A second init keeps what is there (the CA and the token stay the same).
    token, ca = (data / TOKEN_FILE).read_text(), (data / PKI_DIR / "ca.crt").read_bytes()
    init_data_dir(str(data), [], "10.0.0.1:6443")
    assert (data / TOKEN_FILE).read_text() == token and (data / PKI_DIR / "ca.crt").read_bytes() == ca


def test_init_refuses_a_server_that_is_not_host_port(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["init", "--data-dir", str(tmp_path / "d"), "--server", "a:6443,nope"])
    assert exc.value.code == 2
    assert "--server: expected HOST:PORT, got 'nope'" in capsys.readouterr().err


async def test_masters_started_from_copies_share_the_ca_and_token(tmp_path):
    init_data_dir(str(tmp_path / "shared"), [], "127.0.0.1:6443,127.0.0.2:6443")
    for name in ("m1", "m2"):
        shutil.copytree(tmp_path / "shared", tmp_path / name)
    m1 = await start_master(tmp_path / "m1")
    m2 = await start_master(tmp_path / "m2")
    try:
        assert m1.pki.ca.sha256 == m2.pki.ca.sha256
        assert str(m1.pki.token) == str(m2.pki.token)
        assert m1.encryption.key_name == m2.encryption.key_name
        # A master's start keeps the list of masters init wrote into its admin.yaml.
        assert load_config(tmp_path / "m1" / ADMIN_CONFIG).servers == ["127.0.0.1:6443", "127.0.0.2:6443"]
    finally:
        await m1.stop()
        await m2.stop()


def test_leader_election_flags_default_to_kube_controller_managers():
    args = build_parser().parse_args(["--leader-elect"])
    config = leader_election(args)
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)
    assert leader_election(build_parser().parse_args([])) is None


def test_unsafe_leader_election_durations_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--leader-elect", "--leader-elect-lease-duration", "5", "--leader-elect-renew-deadline", "5"])
    assert ("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
            in capsys.readouterr().err)


def test_leader_election_needs_an_etcd_store(tmp_path):
    with pytest.raises(ValueError, match="--leader-elect needs an etcd store"):
        MasterApp(tmp_path, leader_election=LeaderElectionConfig())
