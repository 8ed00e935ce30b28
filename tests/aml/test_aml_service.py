"""The AML service against a real ``MLClient`` whose HTTP goes to a local recording server (``fake_aml``).

The boundary: everything down to azure-core's transport is real (the SDK builds and serialises the job, the
bearer-token policy adds the fake credential's token, errors are the SDK's own exceptions). The code snapshot is
reported present by content hash (AML's dedupe), so the blob upload itself is not run; the job runner is run
here as the compute would run it, with the environment the recorded job creation carried.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nni_pl.errors import ConfigError
from nni_pl.experiment.store import Store
from nni_pl.training import job_runner
from nni_pl.training.aml import (
    CANCELED_EXIT,
    JOB_FILE,
    AmlError,
    AmlTrainingService,
    build_command_job,
    job_name,
)
from nni_pl.training.platforms import ServiceSpec, create_service
from nni_pl.training.service import TrialEnd, TrialJob
from nni_pl.trial import protocol
from tests.aml.conftest import section
from tests.aml.fake_aml import CODE_ID, COMPUTE, WS, FakeAml, FakeCredential, LocalTransport

Make = Callable[..., AmlTrainingService]

TRIAL = """\
import nni_pl
params = nni_pl.get_next_parameter()
for i in range(3):
    nni_pl.report_intermediate_result(params["lr"] * i)
nni_pl.report_final_result({"default": params["lr"] * 10, "note": "done"})
"""


def new_job(tmp_path: Path, trial_id: str, params: dict[str, Any] | None = None, seq: int = 0) -> TrialJob:
    job = TrialJob(
        "exp1", trial_id, seq, seq, "algorithm", params or {"lr": 0.1}, tmp_path / "trials" / trial_id
    )
    protocol.write_parameter_file(job.trial_dir, job.parameter_record())
    return job


def wait_end(service: AmlTrainingService, trial_id: str, limit: float = 15.0) -> TrialEnd:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for end in service.poll(0.2):
            if end.trial_id == trial_id:
                return end
    raise AssertionError(f"{trial_id} did not end within {limit} s")


def created_body(aml: FakeAml, trial_id: str) -> dict[str, Any]:
    puts = aml.calls("PUT", f"/jobs/{job_name('exp1', trial_id)}")
    assert len(puts) == 1, [r.path for r in aml.requests]
    return puts[0].body


# --- the job, before and at the HTTP boundary ---------------------------------------------------------------------
def test_built_job_rest_body_has_runner_command_env_compute_image(tmp_path: Path) -> None:
    job = new_job(tmp_path, "t1", {"lr": 0.5, "layers": [1, 2]})
    built = build_command_job(
        job,
        section=section(python="python3"),
        command="python train.py --model.lr=0.5",
        code=tmp_path,
        store_url="postgresql://nni@db:5432/nni",
        experiment_name="nnipl-exp1",
    )
    body = built._to_job()._to_rest_object().as_dict()
    props = body["properties"]
    assert props["command"] == "python3 -m nni_pl.training.job_runner"
    assert props["computeId"] == COMPUTE
    assert props["experimentName"] == "nnipl-exp1"
    env = props["environmentVariables"]
    assert (env["NNI_PLATFORM"], env["NNI_EXP_ID"], env["NNI_TRIAL_JOB_ID"], env["NNI_TRIAL_SEQ_ID"]) == (
        "aml",
        "exp1",
        "t1",
        "0",
    )
    payload = job_runner.decode_job(env["NNI_PL_JOB"])
    assert payload["record"] == job.parameter_record()
    assert payload["command"] == "python train.py --model.lr=0.5"
    assert payload["store_url"] == "postgresql://nni@db:5432/nni"
    assert built.environment.image == "myregistry.azurecr.io/nni-pl:1"
    assert str(built.code) == str(tmp_path)
    assert built.name == "nnipl-exp1-t1"


def test_submit_sends_the_job_to_aml(
    make_service: Make, aml: FakeAml, tmp_path: Path, store_url: str
) -> None:
    service = make_service(extra_args=lambda params: [f"--model.lr={params['lr']}"])
    assert [r.path.rsplit("/", 2)[-2:] for r in aml.requests[:2]] == [
        ["workspaces", WS],
        ["computes", COMPUTE],
    ]
    job = new_job(tmp_path, "t1")
    info = service.submit(job)
    assert info.platform == "aml" and service.running() == {"t1"}
    body = created_body(aml, "t1")
    props = body["properties"]
    assert props["jobType"] == "Command"
    assert props["command"] == "python -m nni_pl.training.job_runner"
    assert props["computeId"].endswith(f"/computes/{COMPUTE}")
    assert props["codeId"] == CODE_ID
    assert props["experimentName"] == "nnipl-exp1"
    payload = job_runner.decode_job(props["environmentVariables"]["NNI_PL_JOB"])
    assert payload == {
        "record": job.parameter_record(),
        "command": "python train.py --model.lr=0.1",
        "store_url": store_url,
    }
    env_put = aml.calls("PUT", "/environments/")[-1]
    assert props["environmentId"].endswith(env_put.path.split("/workspaces/ml-ws")[1])
    assert env_put.body["properties"]["image"] == "myregistry.azurecr.io/nni-pl:1"
    assert all(r.authorization == "Bearer fake-token-for-tests" for r in aml.requests)
    # where the job is, in the trial's folder, before a manager crash could lose it
    record = json.loads((job.control_dir / JOB_FILE).read_text())
    assert record["job"] == "nnipl-exp1-t1" and record["workspace"] == WS
    # the uploaded snapshot of the first job is reused: no second lookup by content hash
    hash_lookups = len(aml.calls("GET", "/codes/"))
    service.submit(new_job(tmp_path, "t2", seq=1))
    assert created_body(aml, "t2")["properties"]["codeId"] == CODE_ID
    assert len(aml.calls("GET", "/codes/")) == hash_lookups


def test_code_upload_honours_nniignore(make_service: Make, code_dir: Path, tmp_path: Path) -> None:
    (code_dir / "data").mkdir()
    (code_dir / "data" / "big.bin").write_bytes(b"0" * 100)
    (code_dir / ".nniignore").write_text("data/\n")
    (code_dir / ".gitignore").write_text("train.py\n")  # the SDK must not apply this one
    service = make_service()
    staged = service._stage_code()
    assert sorted(p.name for p in staged.iterdir()) == [".amlignore", ".gitignore", ".nniignore", "train.py"]


# --- status ---------------------------------------------------------------------------------------------------
def test_status_queued_running_completed(make_service: Make, aml: FakeAml, tmp_path: Path) -> None:
    service = make_service()
    service.submit(new_job(tmp_path, "ok"))
    end = wait_end(service, "ok")
    assert (end.exit_code, end.error) == (0, None)
    assert service.running() == set()
    assert len(aml.calls("GET", "/jobs/nnipl-exp1-ok")) == 3  # Queued, Running, Completed


def test_status_failed_before_any_report_says_the_image_needs_nni_pl(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    aml.scripts[job_name("exp1", "bad")] = ["Queued", "Preparing", "Failed"]
    service = make_service()
    service.submit(new_job(tmp_path, "bad"))
    end = wait_end(service, "bad")
    assert end.exit_code == 1
    assert "No module named nni_pl" in end.error and "myregistry.azurecr.io/nni-pl:1" in end.error
    assert "https://ml.azure.com/runs/nnipl-exp1-bad" in end.error
    assert "\n" not in end.error


def test_failed_after_reports_is_a_plain_failure(
    make_service: Make, aml: FakeAml, tmp_path: Path, store_url: str
) -> None:
    aml.scripts[job_name("exp1", "late")] = ["Running", "Running", "Running", "Failed"]
    Store(store_url).relay("exp1", "late", [{"seq": 0, "type": "PERIODICAL", "value": 0.1, "time": 1.0}])
    service = make_service()
    service.submit(new_job(tmp_path, "late"))
    end = wait_end(service, "late")
    assert end.exit_code == 1 and "nni_pl" not in end.error and "std_log.txt" in end.error


def test_status_back_off_grows_while_unchanged(make_service: Make, aml: FakeAml, tmp_path: Path) -> None:
    aml.scripts[job_name("exp1", "slow")] = ["Running"] * 100
    service = make_service(min_poll=0.05, max_poll=0.4)
    service.submit(new_job(tmp_path, "slow"))
    time.sleep(2.0)
    times = [r.time for r in aml.calls("GET", "/jobs/nnipl-exp1-slow")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 4
    assert gaps[0] < 0.2 and gaps[-1] >= 0.3  # 0.05 s doubling, held at 0.4 s
    assert max(gaps) < 0.6


def test_poll_never_blocks_longer_than_its_timeout(make_service: Make, aml: FakeAml, tmp_path: Path) -> None:
    aml.get_delay = 1.5  # Azure answers slowly
    service = make_service()
    service.submit(new_job(tmp_path, "t1"))
    for timeout in (0.0, 0.1, 0.3):
        started = time.monotonic()
        assert service.poll(timeout) == []
        assert time.monotonic() - started < timeout + 0.15


# --- stopping -------------------------------------------------------------------------------------------------
def test_terminate_cancels_the_job(make_service: Make, aml: FakeAml, tmp_path: Path) -> None:
    aml.scripts[job_name("exp1", "long")] = ["Running"] * 100
    service = make_service()
    service.submit(new_job(tmp_path, "long"))
    service.terminate("long")
    assert aml.canceled == ["nnipl-exp1-long"]
    assert aml.calls("POST", "/jobs/nnipl-exp1-long/cancel")
    end = wait_end(service, "long")
    assert end.exit_code == CANCELED_EXIT and "canceled by nni-pl" in end.error
    service.terminate("long")  # ended: nothing more is sent
    assert len(aml.calls("POST", "/cancel")) == 1


def test_a_job_canceled_in_azure_is_a_failure_not_rerun(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    aml.scripts[job_name("exp1", "ext")] = ["Running", "Canceled"]
    service = make_service()
    service.submit(new_job(tmp_path, "ext"))
    end = wait_end(service, "ext")
    assert end.exit_code is None and end.requeue is False and "canceled in Azure" in end.error


# --- metrics through the store --------------------------------------------------------------------------------
def run_runner_as_the_compute(
    aml: FakeAml, trial_id: str, code_dir: Path, tmp_path: Path
) -> subprocess.CompletedProcess:
    """Run the recorded job's command with its recorded environment, as the AML compute would."""
    props = created_body(aml, trial_id)["properties"]
    env = {
        **os.environ,
        **props["environmentVariables"],
        job_runner.ENV_TRIAL_ROOT: str(tmp_path / "compute"),
    }
    env.pop("NNI_PL_STORE_URL", None)
    command = props["command"].split()
    assert command[1:] == ["-m", job_runner.RUNNER_MODULE]
    return subprocess.run(
        [sys.executable, *command[1:]], cwd=code_dir, env=env, capture_output=True, text=True, timeout=60
    )


def check_metrics_arrive(
    make_service: Make, aml: FakeAml, code_dir: Path, tmp_path: Path, **kwargs: Any
) -> None:
    (code_dir / "train.py").write_text(TRIAL)
    aml.scripts[job_name("exp1", "m1")] = ["Running"] * 100
    service = make_service(**kwargs)
    job = new_job(tmp_path, "m1", {"lr": 0.5})
    service.submit(job)
    assert service.read_metrics(job) == []
    proc = run_runner_as_the_compute(aml, "m1", code_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = service.read_metrics(job)
    assert [(r["seq"], r["type"], r["value"]) for r in records] == [
        (0, "PERIODICAL", 0.0),
        (1, "PERIODICAL", 0.5),
        (2, "PERIODICAL", 1.0),
        (3, "FINAL", {"default": 5.0, "note": "done"}),
    ]
    assert service.read_metrics(job) == []  # each record once
    assert job_runner.parse_log(proc.stdout).records == records  # the log has the same, in case
    aml.scripts[job_name("exp1", "m1")] = ["Completed"]
    assert wait_end(service, "m1").exit_code == 0
    assert service.read_metrics(job) == []


def test_metrics_relay_through_a_sqlite_store(
    make_service: Make, aml: FakeAml, code_dir: Path, tmp_path: Path
) -> None:
    check_metrics_arrive(make_service, aml, code_dir, tmp_path)


def test_metrics_relay_through_postgres(
    make_service: Make, aml: FakeAml, code_dir: Path, tmp_path: Path, postgres_store_url: str
) -> None:
    Store(postgres_store_url).close()
    check_metrics_arrive(make_service, aml, code_dir, tmp_path, store_url=postgres_store_url)


# --- a manager crash ------------------------------------------------------------------------------------------
def test_reattach_finds_the_job_by_its_recorded_name(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    aml.scripts[job_name("exp1", "r1")] = ["Running"] * 3 + ["Completed"]
    first = make_service()
    job = new_job(tmp_path, "r1")
    first.submit(job)
    first.shutdown()  # the manager died; the job runs on in Azure
    aml.steps[job_name("exp1", "r1")] = 0
    second = make_service()
    assert second.reattach(job, None, None) is True
    assert second.running() == {"r1"}
    assert wait_end(second, "r1").exit_code == 0
    assert second.reattach(new_job(tmp_path, "never"), None, None) is False  # no aml.json: never submitted


def test_reattach_reports_a_job_that_ended_meanwhile(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    service = make_service()
    job = new_job(tmp_path, "r2")
    service.submit(job)
    aml.scripts[job_name("exp1", "r2")] = ["Failed"]
    again = make_service()
    end = again.reattach(job, None, None)
    assert isinstance(end, TrialEnd) and end.exit_code == 1


def test_reattach_of_a_job_aml_never_got_submits_again(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    job = new_job(tmp_path, "lost")
    job.control_dir.mkdir(parents=True, exist_ok=True)
    (job.control_dir / JOB_FILE).write_text(
        json.dumps(
            {
                "job": job_name("exp1", "lost"),
                "subscription": section().subscription_id,
                "resource_group": section().resource_group,
                "workspace": WS,
            }
        )
    )
    assert make_service().reattach(job, None, None) is False


# --- errors ---------------------------------------------------------------------------------------------------
class NoLogin:
    """A credential whose chain found nothing, with DefaultAzureCredential's own message shape."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.identity import CredentialUnavailableError

        raise CredentialUnavailableError(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n"
            "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are "
            "not fully configured.\nVisit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot\n"
            "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable, no response from "
            "the IMDS endpoint.\n"
            "\tAzureCliCredential: Azure CLI not found on path\n"
            "To mitigate this issue, please refer to the troubleshooting guidelines here at "
            "https://aka.ms/azsdk/python/identity/defaultazurecredential/troubleshoot."
        )


def test_auth_failure_is_one_line_naming_each_credential_step(make_service: Make) -> None:
    with pytest.raises(AmlError) as info:
        make_service(credential=NoLogin())
    message = str(info.value)
    assert "\n" not in message and "az login" in message
    for step in (
        "EnvironmentCredential",
        "ManagedIdentityCredential",
        "AzureCliCredential: Azure CLI not found on path",
    ):
        assert step in message
    assert "aka.ms" not in message


def test_auth_failure_of_the_real_default_credential(
    make_service: Make, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from azure.identity import DefaultAzureCredential

    for name in [n for n in os.environ if n.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `az` here
    credential = DefaultAzureCredential(
        exclude_managed_identity_credential=True,  # it would ask the IMDS endpoint over the network
        exclude_workload_identity_credential=True,
        exclude_shared_token_cache_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_powershell_credential=True,
        exclude_developer_cli_credential=True,
        exclude_interactive_browser_credential=True,
    )
    with pytest.raises(
        AmlError, match=r"cannot log in to Azure.*EnvironmentCredential.*AzureCliCredential"
    ) as info:
        make_service(credential=credential)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("changes", "field", "match"),
    [
        ({"workspaceName": "wrong-ws"}, "workspaceName", "workspace 'wrong-ws' .* not found"),
        ({"resourceGroup": "other-rg"}, "resourceGroup", "resource group 'other-rg' not found"),
        (
            {"subscriptionId": "00000000-0000-0000-0000-000000000000"},
            "subscriptionId",
            "subscription 0{8}-.* not found",
        ),
        ({"computeTarget": "gpu-missing"}, "computeTarget", "no compute 'gpu-missing' in workspace 'ml-ws'"),
    ],
)
def test_wrong_workspace_or_compute_is_a_config_error(
    make_service: Make, changes: dict[str, Any], field: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        make_service(section=section(**changes))
    assert info.value.field == f"trainingService.{field}"
    assert "\n" not in str(info.value)


def test_a_refused_job_ends_the_trial_with_azure_s_reason(
    make_service: Make, aml: FakeAml, tmp_path: Path
) -> None:
    service = make_service()
    aml.fail_create = (400, "UserError", "Compute cpu-cluster is in a failed state.\nSee the portal.")
    service.submit(new_job(tmp_path, "no"))
    end = wait_end(service, "no")
    assert end.exit_code is None and end.requeue is False
    assert (
        "create the job nnipl-exp1-no" in end.error
        and "Compute cpu-cluster is in a failed state" in end.error
    )
    assert "\n" not in end.error


def spec(store_url: str | None, code_dir: Path, **section_changes: Any) -> ServiceSpec:
    return ServiceSpec(
        section=section(**section_changes),
        trial_command="python train.py",
        trial_code_directory=code_dir,
        experiment_directory=code_dir,
        experiment_id="exp1",
        store_url=store_url,
    )


@pytest.mark.parametrize("url", [None, "sqlite:////tmp/x/store.sqlite"])
def test_from_spec_needs_a_server_store(url: str | None, code_dir: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"platform aml needs storeUrl: postgresql://.* reachable from the compute"
    ):
        create_service(spec(url, code_dir))


def test_from_spec_keeps_a_store_password_out_of_jobs_unless_asked(aml: FakeAml, code_dir: Path) -> None:
    with pytest.raises(ConfigError, match="passStorePassword") as info:
        create_service(spec("postgresql://nni:s3cret@db:5432/nni", code_dir))
    assert "s3cret" not in str(info.value)
    service = AmlTrainingService.from_spec(
        spec("postgresql://nni:s3cret@db:5432/nni", code_dir, passStorePassword=True),
        credential=FakeCredential(),
        client_kwargs={"transport": LocalTransport(aml.port)},
    )
    try:
        assert service.store_url == "postgresql://nni:s3cret@db:5432/nni"
    finally:
        service.shutdown()
