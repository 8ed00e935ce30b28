"""The remote platform's config (NNI docs L16184-16298, L2313-2420), its secrets, v1 machineList (L17357-17393)
and hybrid lists (L3429-3464)."""

from __future__ import annotations

import importlib.abc
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nni_pl.errors import ConfigError, MissingDependencyError
from nni_pl.experiment import Experiment, ExperimentConfig, RemoteConfig, RemoteMachineConfig
from nni_pl.experiment.control import redact
from nni_pl.training.local import LocalConfig
from nni_pl.training.platforms import HybridConfig, ServiceSpec, blank_section, create_service, parse_section
from nni_pl.training.remote_config import secret_env_name

PASSWORD = "s3cret-Pa55word"
PASSPHRASE = "key-phrase-77"
ENV0 = "NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_0_PASSWORD"


class _NoHosts:
    """Stands in for the remote service in these config tests (their hosts, 'h' and 'h2', do not exist): the
    service against real hosts is tested in tests/remote."""

    def shutdown(self) -> None:
        pass

    def hand_over(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_host_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    import nni_pl.experiment.experiment as experiment_module

    monkeypatch.setattr(experiment_module, "create_service", lambda spec: _NoHosts())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder with ~/.ssh/id_rsa and ~/.ssh/known_hosts, and no NNI_PL_SECRET_* variables."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("not a real key\n")
    (home / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("NNI_PL_SECRET_"):
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "id_test"
    path.parent.mkdir()
    path.write_text("not a real key\n")
    return path


def _remote(*machines: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {"platform": "remote", "machineList": list(machines), **keys}


def _section(*machines: dict[str, Any], **keys: Any) -> RemoteConfig:
    return parse_section(_remote(*machines, **keys), "trainingService")


def _error(raw: Any, field: str = "trainingService") -> str:
    with pytest.raises(ConfigError) as info:
        parse_section(raw, field)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- fields -----------------------------------------------------------------------------------------------------------


def test_remote_config_reads_every_field(home, key):
    section = _section(
        {
            "host": "10.1.1.1",
            "port": 10022,
            "user": "bob",
            "password": PASSWORD,
            "sshKeyFile": str(key),
            "sshPassphrase": PASSPHRASE,
            "pythonPath": "/opt/py/bin",
            "gpuIndices": "0,2",
            "maxTrialNumberPerGpu": 2,
            "useActiveGpu": True,
        },
        reuseMode=False,
        strictHostKeyChecking="accept-new",
        knownHostsFile=str(home / "kh"),
        retryOnHostFailure=True,
        hostRetryInterval=2.5,
        remoteWorkingDirectory="/scratch/nni",
    )
    assert isinstance(section, RemoteConfig) and section.platform == "remote"
    (m,) = section.machine_list
    assert (m.host, m.port, m.user, m.ssh_key_file, m.python_path) == (
        "10.1.1.1",
        10022,
        "bob",
        key,
        "/opt/py/bin",
    )
    assert (m.gpu_indices, m.max_trial_number_per_gpu, m.use_active_gpu) == ([0, 2], 2, True)
    assert (m.resolved_password(), m.resolved_passphrase()) == (PASSWORD, PASSPHRASE)
    assert section.reuse_mode is False and section.strict_host_key_checking == "accept-new"
    assert section.known_hosts_file == home / "kh"
    assert section.retry_on_host_failure is True and section.host_retry_interval == 2.5
    assert section.remote_working_directory == "/scratch/nni"
    assert parse_section(section.to_dict(secrets=True), "trainingService") == section


def test_remote_config_defaults_are_nni_s_and_ours(home):
    section = _section({"host": "h", "user": "u", "password": "p"})
    m = section.machine_list[0]
    assert (m.port, m.ssh_key_file, m.gpu_indices, m.max_trial_number_per_gpu, m.use_active_gpu) == (
        22,
        None,
        None,
        1,
        False,
    )
    assert section.reuse_mode is True  # NNI v2's default
    assert section.strict_host_key_checking == "yes"
    assert section.known_hosts_file == home / ".ssh" / "known_hosts"
    assert (section.retry_on_host_failure, section.host_retry_interval) == (False, 10.0)
    assert section.remote_working_directory == "~/nni-pl-experiments"
    # YAML 1.1 reads a bare `yes` as true
    assert (
        _section(
            {"host": "h", "user": "u", "password": "p"}, strictHostKeyChecking=True
        ).strict_host_key_checking
        == "yes"
    )


def test_the_key_file_defaults_to_an_existing_one_in_ssh(home):
    assert _section({"host": "h", "user": "u"}).machine_list[0].ssh_key_file == home / ".ssh" / "id_rsa"
    (home / ".ssh" / "id_ed25519").write_text("k")
    assert _section({"host": "h", "user": "u"}).machine_list[0].ssh_key_file == home / ".ssh" / "id_ed25519"
    (home / ".ssh" / "id_ed25519").unlink()
    (home / ".ssh" / "id_rsa").unlink()
    message = _error(_remote({"host": "h", "user": "u"}, {"host": "h2", "user": "u"}))
    assert message.startswith(
        "config field 'trainingService.machineList[0]': has neither password nor sshKeyFile"
    )
    assert "set password (or password: ${VARIABLE}) or sshKeyFile" in message
    assert _section({"host": "h", "user": "u", "password": "p"}).machine_list[0].ssh_key_file is None


def test_nni_s_ssh_key_file_spelling_is_read_as_sshKeyFile(home, key):
    # NNI's own remote example (docs L2394) writes ssh_key_file
    assert _section({"host": "h", "user": "u", "ssh_key_file": str(key)}).machine_list[0].ssh_key_file == key
    message = _error(_remote({"host": "h", "user": "u", "ssh_key_file": str(key), "sshKeyFile": str(key)}))
    assert message.startswith(
        "config field 'trainingService.machineList[0].ssh_key_file': given together with sshKeyFile"
    )


def test_a_key_file_path_is_expanded_and_relative_to_the_config_file(home, tmp_path):
    (home / ".ssh" / "id_bob").write_text("k")
    assert _section({"host": "h", "user": "u", "sshKeyFile": "~/.ssh/id_bob"}).machine_list[
        0
    ].ssh_key_file == (home / ".ssh" / "id_bob")
    project = tmp_path / "project"
    (project / "keys").mkdir(parents=True)
    (project / "keys" / "id").write_text("k")
    (project / "config.yml").write_text(
        textwrap.dedent(
            """
            trialCommand: python3 mnist.py
            trialConcurrency: 1
            trainingService:
              platform: remote
              machineList:
                - host: 192.0.2.1
                  user: alice
                  sshKeyFile: keys/id
            """
        )
    )
    cfg = ExperimentConfig.load(project / "config.yml")
    assert cfg.training_service.machine_list[0].ssh_key_file == project / "keys" / "id"


M = {"host": "10.1.1.1", "user": "bob", "password": "pw"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_remote({**M, "host": ""}), r"'trainingService.machineList\[0\].host': got ''; give the machine's IP address"),
        (_remote({**M, "host": "a b"}), r"'trainingService.machineList\[0\].host': got 'a b'"),
        (_remote({"user": "bob", "password": "pw"}), r"'trainingService.machineList\[0\].host': is required"),
        (_remote({**M, "host": 10}), r"'trainingService.machineList\[0\].host': got 10 \(int\); give a string"),
        (_remote({"host": "h", "password": "pw"}), r"'trainingService.machineList\[0\].user': is required"),
        (_remote({**M, "user": " "}), r"'trainingService.machineList\[0\].user': got ' '; give the user name"),
        (_remote({**M, "port": 0}), r"'trainingService.machineList\[0\].port': got 0; it must be at least 1"),
        (_remote({**M, "port": 70000}), r"'trainingService.machineList\[0\].port': got 70000; an SSH port is a whole number from 1 to 65535"),
        (_remote({**M, "port": "22x"}), r"'trainingService.machineList\[0\].port': got '22x' \(str\); give a whole number"),
        (_remote({**M, "password": 123}), r"'trainingService.machineList\[0\].password': got 123 \(int\); give a string"),
        (_remote({**M, "sshKeyFile": "/no/such/key"}), r"'trainingService.machineList\[0\].sshKeyFile': '/no/such/key' is not a file; give the path of the private key"),
        (_remote({**M, "gpuIndices": "0,x"}), r"'trainingService.machineList\[0\].gpuIndices': got '0,x'; 'x' is not a GPU index"),
        (_remote({**M, "maxTrialNumberPerGpu": 0}), r"'trainingService.machineList\[0\].maxTrialNumberPerGpu': got 0; it must be at least 1"),
        (_remote({**M, "useActiveGpu": "yes"}), r"'trainingService.machineList\[0\].useActiveGpu': got 'yes'; write true or false"),
        (_remote({**M, "pythonPath": ["/usr/bin"]}), r"'trainingService.machineList\[0\].pythonPath': got \['/usr/bin'\]"),
        (_remote({**M, "hots": "x"}), r"'trainingService.machineList\[0\].hots': unknown key \(did you mean 'host'\?\)"),
        (_remote(M, "10.1.1.2"), r"'trainingService.machineList\[1\]': got '10.1.1.2'; write a mapping"),
        (_remote(), r"'trainingService.machineList': got \[\]; list the SSH hosts"),
        ({"platform": "remote"}, r"'trainingService.machineList': got None; list the SSH hosts"),
        (_remote(M, {**M, "host": "10.1.1.1", "password": "other"}), r"'trainingService.machineList\[1\]': bob@10.1.1.1:22 is listed twice, as machineList\[0\] and machineList\[1\]; remove one"),
        (_remote(M, reuse=True), r"'trainingService.reuse': unknown key \(did you mean 'reuseMode'\?\)"),
        (_remote(M, reuseMode="true"), r"'trainingService.reuseMode': got 'true'; write true or false"),
        (_remote(M, strictHostKeyChecking="no"), r"'trainingService.strictHostKeyChecking': got 'no'; use yes .* or accept-new"),
        (_remote(M, strictHostKeyChecking=False), r"'trainingService.strictHostKeyChecking': got False; use yes"),
        (_remote(M, knownHostsFile=7), r"'trainingService.knownHostsFile': got 7 \(int\); give a string"),
        (_remote(M, retryOnHostFailure=1), r"'trainingService.retryOnHostFailure': got 1; write true or false"),
        (_remote(M, hostRetryInterval=0), r"'trainingService.hostRetryInterval': got 0; give the seconds"),
        (_remote(M, hostRetryInterval="10s"), r"'trainingService.hostRetryInterval': got '10s'; give the seconds"),
        (_remote(M, remoteWorkingDirectory=""), r"'trainingService.remoteWorkingDirectory': got ''; give a folder on the hosts"),
    ],
)  # fmt: skip
def test_each_error_is_one_line_naming_the_field_and_echoing_the_value(home, raw, message):
    assert re.match(rf"^config field {message}", _error(raw))


def test_the_same_user_on_another_port_is_another_machine(home):
    section = _section(M, {**M, "port": 2222}, {**M, "user": "alice"})
    assert [m.address for m in section.machine_list] == [
        "bob@10.1.1.1:22",
        "bob@10.1.1.1:2222",
        "alice@10.1.1.1:22",
    ]


# --- secrets ------------------------------------------------------------------------------------------------------------


def test_a_literal_secret_is_never_in_to_dict_json_or_repr(home, key):
    section = _section(
        {"host": "h", "user": "u", "password": PASSWORD, "sshKeyFile": str(key), "sshPassphrase": PASSPHRASE}
    )
    for text in (json.dumps(section.to_dict()), repr(section), repr(section.machine_list[0]), str(section)):
        assert PASSWORD not in text and PASSPHRASE not in text
    stored = section.to_dict()["machineList"][0]
    assert (stored["password"], stored["sshPassphrase"]) == ("***", "***")
    assert "password='***'" in repr(section.machine_list[0])
    assert section.secret_environment() == {
        ENV0: PASSWORD,
        "NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_0_SSHPASSPHRASE": PASSPHRASE,
    }
    assert section.to_dict(secrets=True)["machineList"][0]["password"] == PASSWORD  # in-memory re-reads only


def test_an_environment_reference_is_kept_and_read_when_needed(home, monkeypatch):
    section = _section({"host": "h", "user": "u", "password": "${BOB_PW}"})
    assert section.to_dict()["machineList"][0]["password"] == "${BOB_PW}"
    assert section.secret_environment() == {}  # nothing secret to pass on
    assert "password='${BOB_PW}'" in repr(section.machine_list[0])
    with pytest.raises(ConfigError) as info:
        section.machine_list[0].resolved_password()
    assert str(info.value) == (
        "config field 'trainingService.machineList[0].password': is ${BOB_PW}, but the environment variable BOB_PW "
        "is not set; export BOB_PW=<the password> where the experiment starts or resumes"
    )
    with pytest.raises(ConfigError, match=r"'trainingService.machineList\[0\].password': is \$\{BOB_PW\}"):
        section.preflight()
    monkeypatch.setenv("BOB_PW", PASSWORD)
    assert section.machine_list[0].resolved_password() == PASSWORD
    section.preflight()


def test_a_stored_secret_comes_back_from_its_variable_or_is_an_error_naming_the_field(home, monkeypatch):
    stored = _section(M, {"host": "h2", "user": "u", "password": PASSWORD}).to_dict()
    assert [m["password"] for m in stored["machineList"]] == ["***", "***"]
    read = parse_section(stored, "trainingService")  # reading alone never fails (nni-pl view works)
    with pytest.raises(ConfigError) as info:
        read.machine_list[1].resolved_password()
    message = str(info.value)
    assert message.startswith(
        "config field 'trainingService.machineList[1].password': is ***: the password of u@h2:22 was given "
        "literally and nni-pl never stores it; export NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_1_PASSWORD="
    )
    assert "`password: ${SOME_VARIABLE}`" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"machineList\[0\].password': is \*\*\*"):
        read.preflight()

    monkeypatch.setenv(ENV0, "pw")
    monkeypatch.setenv("NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_1_PASSWORD", PASSWORD)
    read = parse_section(stored, "trainingService")
    assert [m.resolved_password() for m in read.machine_list] == ["pw", PASSWORD]
    read.preflight()
    assert read.to_dict() == stored  # still masked when written again
    assert read.secret_environment()[ENV0] == "pw"  # and passed on again by a resumed, detached run


def test_secret_env_names_follow_the_field():
    assert secret_env_name("trainingService.machineList[0].password") == ENV0
    assert (
        secret_env_name("trainingService[1].machineList[12].sshPassphrase")
        == "NNI_PL_SECRET_TRAININGSERVICE_1_MACHINELIST_12_SSHPASSPHRASE"
    )


def test_redact_masks_passwords_and_passphrases_but_not_variable_names():
    config = {"trainingService": {"machineList": [{"host": "h", "password": "pw", "sshPassphrase": "pp"},
                                                  {"host": "h2", "password": "${PW}"}]}}  # fmt: skip
    masked = redact(config)["trainingService"]["machineList"]
    assert masked == [
        {"host": "h", "password": "***", "sshPassphrase": "***"},
        {"host": "h2", "password": "${PW}"},
    ]


def test_known_hosts_must_exist_when_host_keys_are_checked_strictly(home):
    (home / ".ssh" / "known_hosts").unlink()
    section = _section(M)
    with pytest.raises(ConfigError) as info:
        section.preflight()
    assert str(info.value).startswith(
        f"config field 'trainingService.knownHostsFile': '{home}/.ssh/known_hosts' does not exist, and with "
        "strictHostKeyChecking: yes every host's key must be in it"
    )
    _section(M, strictHostKeyChecking="accept-new").preflight()  # the service records keys there


# --- the experiment config and the Python API ---------------------------------------------------------------------------


def _experiment_dict(tmp_path: Path, service: Any) -> dict[str, Any]:
    return {
        "trialCommand": "python3 mnist.py",
        "trialConcurrency": 1,
        "trialCodeDirectory": str(tmp_path),
        "searchSpace": {"x": {"_type": "choice", "_value": [1, 2]}},
        "tuner": {"name": "Random"},
        "experimentWorkingDirectory": str(tmp_path / "work"),
        "trainingService": service,
    }


def test_validating_a_config_keeps_its_literal_secrets_in_memory(home, tmp_path):
    cfg = ExperimentConfig.from_dict(
        _experiment_dict(tmp_path, _remote({"host": "h", "user": "u", "password": PASSWORD}))
    )
    cfg.validate()
    assert cfg.training_service.machine_list[0].resolved_password() == PASSWORD
    assert cfg.to_dict()["trainingService"]["machineList"][0]["password"] == "***"
    assert PASSWORD not in json.dumps(cfg.json())


def test_experiment_config_remote_starts_empty_and_is_filled_as_in_nni(home, tmp_path, key, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ExperimentConfig("remote")
    assert isinstance(config.training_service, RemoteConfig) and config.training_service.machine_list == []
    config.trial_command = "python3 mnist.py"
    with pytest.raises(
        ConfigError, match=r"^config field 'trainingService.machineList': got \[\]; list the SSH hosts"
    ):
        config.validate()
    # NNI docs L19069-19082
    config.training_service.machine_list.append(
        RemoteMachineConfig(host="192.0.2.1", user="alice", ssh_key_file=str(key))
    )
    blank = RemoteMachineConfig()  # NNI's CGO example fills a blank one (docs L5759)
    blank.host, blank.user, blank.password, blank.gpu_indices = "192.0.2.2", "bob", PASSWORD, "0,1"
    config.training_service.machine_list.append(blank)
    config.validate()
    first, second = config.training_service.machine_list
    assert first.ssh_key_file == key and isinstance(first.ssh_key_file, Path)
    assert second.gpu_indices == [0, 1] and second.resolved_password() == PASSWORD
    assert config.training_service.secret_environment() == {
        "NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_1_PASSWORD": PASSWORD
    }
    config.training_service.machine_list.append(RemoteMachineConfig(host="192.0.2.3", user="carol", port=0))
    with pytest.raises(ConfigError, match=r"^config field 'trainingService.machineList\[2\].port': got 0"):
        config.validate()
    assert isinstance(Experiment("remote").config.training_service, RemoteConfig)


def test_a_created_experiment_stores_no_secret(home, tmp_path, monkeypatch):
    raw = _experiment_dict(
        tmp_path,
        _remote(
            {"host": "h", "user": "u", "password": PASSWORD},
            {"host": "h2", "user": "u", "password": "${PW2}"},
        ),
    )
    monkeypatch.setenv("PW2", "from-the-environment")
    exp = Experiment(raw)
    exp.prepare()  # checks everything and creates the folder, the store row and config.yml; no service is built
    directory = exp.directory
    assert (directory / "config.yml").is_file()
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and b"from-the-environment" not in data, path
    stored = exp.store.get_experiment(exp.id).config["trainingService"]["machineList"]
    assert [m["password"] for m in stored] == ["***", "${PW2}"]
    assert b"${PW2}" in (directory / "config.yml").read_bytes()

    # a detached manager gets the literal secret through its environment only ...
    seen: dict[str, Any] = {}

    class _Ended:
        pid = 4242

        def __init__(self, argv, **kwargs):
            seen.update(argv=argv, env=kwargs["env"])

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", _Ended)  # _detached imports it where it starts the manager
    exp._detach()
    assert seen["env"][ENV0] == PASSWORD
    assert not any(PASSWORD in a for a in seen["argv"])
    # ... which is what it needs to read the stored config back
    child = ExperimentConfig.from_stored(exp.store.get_experiment(exp.id).config)
    with pytest.raises(ConfigError, match=rf"machineList\[0\].password': is \*\*\*.*export {ENV0}="):
        child.training_service.preflight()
    monkeypatch.setenv(ENV0, seen["env"][ENV0])
    child = ExperimentConfig.from_stored(exp.store.get_experiment(exp.id).config)
    assert [m.resolved_password() for m in child.training_service.machine_list] == [
        PASSWORD,
        "from-the-environment",
    ]
    exp.store.close()


def test_a_detached_manager_reads_its_secret_then_drops_it_from_its_environment(home, tmp_path, monkeypatch):
    from nni_pl.experiment import _daemon

    exp = Experiment(_experiment_dict(tmp_path, _remote({"host": "h", "user": "u", "password": PASSWORD})))
    exp.prepare()
    url, exp_id = exp.store.url, exp.id
    exp.store.close()
    seen = {}

    def build(self):  # the manager's next step: see what it has, then stop there
        seen["password"] = self.config.training_service.machine_list[0].resolved_password()
        seen["env"] = {k: v for k, v in os.environ.items() if k.startswith("NNI_PL_SECRET_")}
        raise ConfigError("", "stopped by the test")

    monkeypatch.setattr(Experiment, "_build_algorithms", build)
    monkeypatch.setenv(ENV0, PASSWORD)  # as spawn() gives it
    assert _daemon.main([url, exp_id]) == 2
    assert seen == {"password": PASSWORD, "env": {}}  # trials started from here inherit no secret


def test_an_experiment_does_not_start_when_a_secret_cannot_be_had(home, tmp_path):
    exp = Experiment(
        _experiment_dict(tmp_path, _remote({"host": "h", "user": "u", "password": "${NOT_SET_PW}"}))
    )
    with pytest.raises(
        ConfigError, match=r"'trainingService.machineList\[0\].password': is \$\{NOT_SET_PW\}"
    ):
        exp.prepare()
    assert not (tmp_path / "work").exists()  # checked before anything was created


def test_local_gpu_checks_do_not_apply_to_remote_hosts(home, tmp_path):
    raw = _experiment_dict(tmp_path, _remote({**M, "gpuIndices": [0]}))
    raw["trialGpuNumber"] = 4  # this machine has no 4 GPUs; the hosts' GPUs are their service's business
    exp = Experiment(raw)
    exp.prepare()
    assert exp.config.trial_gpu_number == 4
    exp.store.close()


def test_parsing_a_remote_config_imports_no_ssh_library(home):
    code = (
        "import sys\n"
        "from nni_pl.experiment import ExperimentConfig\n"
        "ExperimentConfig.from_dict({'trialCommand': 'x', 'trialConcurrency': 1, 'trainingService': {'platform': 'remote', "
        "'machineList': [{'host': 'h', 'user': 'u', 'password': 'p'}]}})\n"
        "print(sorted(m for m in ('paramiko', 'asyncssh', 'nni_pl.training.remote', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _NoParamiko(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "nni_pl.training.remote":
            raise ModuleNotFoundError("No module named 'paramiko'", name="paramiko")
        return None


def test_building_the_remote_service_without_paramiko_names_the_extra(home, tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "nni_pl.training.remote", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoParamiko(), *sys.meta_path])
    spec = ServiceSpec(
        section=_section(M),
        trial_command="python t.py",
        trial_code_directory=tmp_path,
        experiment_directory=tmp_path,
    )
    with pytest.raises(MissingDependencyError) as info:
        create_service(spec)
    assert str(info.value) == (
        "platform 'remote' needs the package 'paramiko', which is not installed; "
        "install it with: pip install 'nni-pl[remote]'"
    )


# --- hybrid ---------------------------------------------------------------------------------------------------------------


def test_a_list_of_platforms_is_a_hybrid_config(home):
    hybrid = parse_section(
        [_remote({"host": "h", "user": "u", "password": PASSWORD}), {"platform": "local"}], "trainingService"
    )
    assert isinstance(hybrid, HybridConfig) and hybrid.platform == "hybrid"
    assert hybrid.platforms == ["remote", "local"] and isinstance(hybrid[1], LocalConfig) and len(hybrid) == 2
    stored = hybrid.to_dict()
    assert isinstance(stored, list) and stored[0]["machineList"][0]["password"] == "***"
    assert PASSWORD not in json.dumps(stored) and PASSWORD not in repr(hybrid)
    assert hybrid.secret_environment() == {"NNI_PL_SECRET_TRAININGSERVICE_0_MACHINELIST_0_PASSWORD": PASSWORD}
    assert parse_section(hybrid.to_dict(secrets=True), "trainingService") == hybrid
    # a list of one platform is that platform
    assert isinstance(parse_section([_remote(M)], "trainingService"), RemoteConfig)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"platform": "local"}, {"platform": "local"}], r"'trainingService\[1\]': platform 'local' is listed twice, as trainingService\[0\] and trainingService\[1\]; keep one"),
        ([_remote(M), _remote({**M, "host": "other"})], r"'trainingService\[1\]': platform 'remote' is listed twice.*put all hosts in one machineList"),
        ([{"platform": "local"}, [{"platform": "local"}]], r"'trainingService\[1\]': got a list .* inside the list"),
        ([[{"platform": "local"}]], r"'trainingService\[0\]': got a list .* inside the list"),
        ([], r"'trainingService': got an empty list"),
        ([{"platform": "local"}, _remote({**M, "port": -1})], r"'trainingService\[1\].machineList\[0\].port': got -1"),
        ([{"platform": "local"}, {"platform": "openpai"}], r"'trainingService\[1\].platform': platform 'openpai' is not available"),
    ],
)  # fmt: skip
def test_a_bad_hybrid_list_names_the_entry(home, raw, message):
    assert re.match(rf"^config field {message}", _error(raw))


def test_experiment_config_with_a_list_of_platforms_is_filled_as_in_nni(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ExperimentConfig(["remote", "local"])
    assert isinstance(config.training_service, HybridConfig)
    config.trial_command = "python3 mnist.py"
    config.training_service[0].machine_list.append(RemoteMachineConfig(host="h", user="u", password=PASSWORD))
    config.validate()
    assert config.training_service.platforms == ["remote", "local"]
    stored = config.to_dict()["trainingService"]
    assert stored[0]["machineList"][0]["password"] == "***" and stored[1]["platform"] == "local"
    assert config.training_service.secret_environment() == {
        "NNI_PL_SECRET_TRAININGSERVICE_0_MACHINELIST_0_PASSWORD": PASSWORD
    }
    assert isinstance(blank_section(["local"]), LocalConfig)
    with pytest.raises(
        ConfigError,
        match=r"^config field 'trainingService': got \['local', 'local'\]; name each platform once",
    ):
        ExperimentConfig(["local", "local"])


# --- NNI v1 ---------------------------------------------------------------------------------------------------------------

V1_REMOTE = """
authorName: test
experimentName: test_experiment
trialConcurrency: 3
maxExecDuration: 1h
maxTrialNum: 10
#choice: local, remote, pai, kubeflow
trainingServicePlatform: remote
searchSpacePath: /nni/search_space.json
#choice: true, false
useAnnotation: false
tuner:
  #choice: TPE, Random, Anneal, Evolution
  builtinTunerName: TPE
  classArgs:
    #choice: maximize, minimize
    optimize_mode: maximize
trial:
  command: python3 mnist.py
  codeDir: /nni/mnist
  gpuNum: 0
#machineList can be empty if the platform is local
machineList:
  - ip: 10.10.10.10
    port: 22
    username: test
    passwd: test
  - ip: 10.10.10.11
    port: 22
    username: test
    passwd: test
  - ip: 10.10.10.12
    port: 22
    username: test
    sshKeyPath: /nni/sshkey
    passphrase: qwert
    # Below is an example of specifying python environment.
    pythonPath: ${replace_to_python_environment_path_in_your_remote_machine}
"""


def _v1(tmp_path: Path, text: str) -> Path:
    (tmp_path / "nni" / "mnist").mkdir(parents=True)
    (tmp_path / "nni" / "search_space.json").write_text('{"lr": {"_type": "choice", "_value": [0.1, 0.01]}}')
    (tmp_path / "nni" / "sshkey").write_text("k")
    path = tmp_path / "config_v1.yml"
    path.write_text(text.replace("/nni/", f"{tmp_path}/nni/"))
    return path


def test_v1_remote_template_maps_to_v2(home, tmp_path, caplog):
    # NNI docs L17357-17393, paths moved under tmp_path
    with caplog.at_level(logging.WARNING, logger="nni_pl.experiment.config"):
        cfg = ExperimentConfig.load(_v1(tmp_path, V1_REMOTE))
    ts = cfg.training_service
    assert isinstance(ts, RemoteConfig)
    assert [(m.host, m.port, m.user) for m in ts.machine_list] == [
        ("10.10.10.10", 22, "test"),
        ("10.10.10.11", 22, "test"),
        ("10.10.10.12", 22, "test"),
    ]
    assert [m.resolved_password() for m in ts.machine_list] == ["test", "test", None]
    third = ts.machine_list[2]
    assert third.ssh_key_file == tmp_path / "nni" / "sshkey" and third.resolved_passphrase() == "qwert"
    assert third.python_path == "${replace_to_python_environment_path_in_your_remote_machine}"
    assert ts.reuse_mode is False  # v1's default
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "machineList -> trainingService.machineList" in notes
    assert "reuseMode false (v1's default; v2's is true)" in notes
    stored = cfg.to_dict()["trainingService"]["machineList"]
    assert [(m["password"], m["sshPassphrase"]) for m in stored] == [
        ("***", None),
        ("***", None),
        (None, "***"),
    ]


def test_v1_remote_config_reuse_maps_to_reuse_mode(home, tmp_path):
    text = V1_REMOTE + "remoteConfig:\n  reuse: true\n"
    assert ExperimentConfig.load(_v1(tmp_path, text)).training_service.reuse_mode is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "remoteConfig:\n  reuse: true\n  reus: 1\n",
            r"'remoteConfig.reus': unknown key \(did you mean 'reuse'\?\)",
        ),
        ("remoteConfig: true\n", r"'remoteConfig': got True; v1 'remoteConfig' is a mapping"),
    ],
)
def test_v1_remote_config_errors(home, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=rf"^config field {message}"):
        ExperimentConfig.load(_v1(tmp_path, V1_REMOTE + extra))


def test_v1_machine_keys_are_checked(home, tmp_path):
    text = V1_REMOTE.replace(
        "    passwd: test\n  - ip: 10.10.10.11", "    passwd: test\n    ipp: x\n  - ip: 10.10.10.11"
    )
    with pytest.raises(
        ConfigError, match=r"^config field 'machineList\[0\].ipp': unknown key \(did you mean 'ip'\?\)"
    ):
        ExperimentConfig.load(_v1(tmp_path, text))
    local = V1_REMOTE.replace("trainingServicePlatform: remote", "trainingServicePlatform: local")
    with pytest.raises(
        ConfigError,
        match=r"^config field 'machineList': is for trainingServicePlatform: remote, but the platform is 'local'",
    ):
        ExperimentConfig.load(_v1(tmp_path / "b", local))
    empty = local.split("#machineList")[0] + "machineList: []\n"
    assert isinstance(ExperimentConfig.load(_v1(tmp_path / "c", empty)).training_service, LocalConfig)


def test_v1_remote_machines_with_a_bad_value_name_the_v2_field(home, tmp_path):
    text = V1_REMOTE.replace(
        "port: 22\n    username: test\n    sshKeyPath", "port: 0\n    username: test\n    sshKeyPath"
    )
    with pytest.raises(ConfigError, match=r"^config field 'trainingService.machineList\[2\].port': got 0"):
        ExperimentConfig.load(_v1(tmp_path, text))
