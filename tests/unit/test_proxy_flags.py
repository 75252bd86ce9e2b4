"""The agent's node proxy flags: ``--proxy-mode iptables|none`` (default iptables) reaches the
agent's config, and ``--cleanup`` is accepted without a join token."""

from __future__ import annotations

import pytest

from pykubelet.main import parse_args


def test_proxy_mode_defaults_to_iptables():
    args = parse_args(["--node-name", "n1"])
    assert args.proxy_mode == "iptables" and args.cleanup is False


def test_proxy_mode_none_and_cleanup():
    args = parse_args(["--node-name", "n1", "--proxy-mode", "none", "--cleanup"])
    assert args.proxy_mode == "none" and args.cleanup is True


def test_unknown_proxy_mode_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--proxy-mode", "ipvs"])
    assert exc.value.code == 2
    assert "--proxy-mode: invalid choice: 'ipvs'" in capsys.readouterr().err
