"""The deployment files (Containerfile, deploy/kubernetes) name only what exists: every
ferry command, option, port, probe path and environment variable they use. No container
engine runs on CI's machines, so the image is checked by reading it; the probes, the
environment variables and shared keys are checked for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from dataferry.model.load import DEPLOYMENT_VARIABLES
from tests.broker.small_model import make_shop
from tests.connectors.pg_helpers import temporary_database
from tests.server.live import ferry_serve

ROOT = Path(__file__).resolve().parent.parent
FERRY = str(Path(sys.executable).parent / "ferry")
KNOWN_ENV = {*DEPLOYMENT_VARIABLES.values(), "PGPASSWORD", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION",
             "MODEL_REPOSITORY", "MODEL_REVISION", "FERRY_AGENT_TOKEN", "ERP_PASSWORD"}


def ferry_command() -> Any:
    """The ``ferry`` command as click sees it (typer builds it)."""
    import typer

    from dataferry.cli.main import every_command

    return typer.main.get_command(every_command())


def check_ferry_args(args: list[str]) -> None:
    """``args`` (what follows ``ferry``) names a real command and only its options."""
    command = ferry_command()
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        command = command.commands.get(rest.pop(0))
        assert command is not None, f"ferry {' '.join(args)}: no such command"
    options = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"ferry {' '.join(args)}: no option {word}"


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each line of the Containerfile, continuations joined."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def test_the_containerfile_builds_ferry_as_a_user_and_serves_on_its_exposed_port() -> None:
    steps = containerfile()
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "VOLUME", "EXPOSE",
             "ENTRYPOINT", "CMD", "ARG", "LABEL"}
    assert {name for name, _ in steps} <= known
    stages = [args for name, args in steps if name == "FROM"]
    assert len(stages) == 2 and " AS build" in stages[0]
    for name, args in steps:
        if name == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    final = steps[[i for i, (name, _) in enumerate(steps) if name == "FROM"][1]:]
    user = [args for name, args in final if name == "USER"]
    assert user and not user[-1].startswith(("0", "root")), "the image must not run as root"
    entrypoint = json.loads(next(args for name, args in final if name == "ENTRYPOINT"))
    command = json.loads(next(args for name, args in final if name == "CMD"))
    assert entrypoint[-1] == "ferry"
    check_ferry_args(command)
    exposed = next(args for name, args in final if name == "EXPOSE")
    assert command[command.index("--port") + 1] == exposed


def manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
            documents.append(document)
    return documents


def test_the_kubernetes_manifests_run_real_ferry_commands() -> None:
    documents = manifests()
    config = {key for d in documents if d["kind"] in ("ConfigMap", "Secret")
              for key in (d.get("data") or d.get("stringData") or {})}
    assert config <= KNOWN_ENV, config - KNOWN_ENV
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {
        "ferry-serve", "ferry-scheduler", "ferry-agent"}
    refs = {d["metadata"]["name"] for d in documents if d["kind"] in ("ConfigMap", "Secret")}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            check_ferry_args(container["args"])
            for source in container.get("envFrom", []):
                name = next(iter(source.values()))["name"]
                assert name in refs, f"{deployment['metadata']['name']}: no {name} defined"
            assert {m["name"] for m in container["volumeMounts"]} <= volumes
            if container["args"][0] == "agent":  # it dials out and never listens
                assert "ports" not in container and "livenessProbe" not in container
            for probe in ("livenessProbe", "readinessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz")
                    port = container[probe]["httpGet"]["port"]
                    assert port in {p["name"] for p in container["ports"]}
            if container["args"][0] == "serve":
                port = container["args"][container["args"].index("--port") + 1]
                assert int(port) == container["ports"][0]["containerPort"]
        for init in pod.get("initContainers", []):
            script = " ".join(init["command"])
            assert "ed25519" in script or "git clone" in script, script
            if "ed25519" in script:  # the keys reach ferry as 0600, which it requires
                assert "chmod 600" in script


def test_probes_answer_without_a_login_and_readyz_follows_the_metadata_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FERRY_HOME and FERRY_METADATA put the home and the database where the deployment
    says, whatever ferry.yaml says; /readyz turns 503 when the database goes."""
    root = make_shop(tmp_path / "model")
    home = tmp_path / "elsewhere"
    with temporary_database() as url:
        monkeypatch.setenv("FERRY_HOME", str(home))
        monkeypatch.setenv("FERRY_METADATA", url)
        with ferry_serve(root) as served:
            assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
            ready = httpx.get(f"{served.url}/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ready"}
            paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
            assert not {"/healthz", "/readyz"} & set(paths)
            with psycopg.connect(url) as db:  # the server's database is this one
                tables = {r[0] for r in db.execute(
                    "select tablename from pg_tables where schemaname = 'public'")}
            assert "users" in tables
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute(f"drop database {name} with (force)")
            gone = httpx.get(f"{served.url}/readyz", timeout=30)
            assert gone.status_code == 503
            assert gone.json()["reason"] == "metadata database unavailable"
            assert httpx.get(f"{served.url}/healthz").status_code == 200
    assert not (root / ".ferry").exists(), "FERRY_HOME was not used"


def test_keys_generate_makes_every_teams_key_once_in_ferry_home(tmp_path: Path) -> None:
    root = make_shop(tmp_path / "model")
    env = {**os.environ, "FERRY_HOME": str(tmp_path / "home")}

    def keys(*args: str) -> list[dict[str, str]]:
        done = subprocess.run([FERRY, "keys", "--json", "--model", str(root), *args],
                              env=env, capture_output=True, text=True, check=True)
        listed: list[dict[str, str]] = json.loads(done.stdout)
        return listed

    assert keys() == []
    made = keys("--generate")
    assert [k["team"] for k in made] == ["shop"]
    assert Path(made[0]["path"]).parent == tmp_path / "home" / "keys"
    assert oct(Path(made[0]["path"]).stat().st_mode & 0o777) == "0o600"
    assert keys("--generate") == made  # a second time changes nothing


def test_the_args_check_refuses_what_ferry_lacks() -> None:
    check_ferry_args(["serve", "--no-scheduler", "--port", "8400"])
    with pytest.raises(AssertionError, match="no option --workers"):
        check_ferry_args(["serve", "--workers", "2"])
    with pytest.raises(AssertionError, match="no such command"):
        check_ferry_args(["launch", "--model", "/model"])
