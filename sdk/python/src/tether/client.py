"""A connection to a Tether hub, from the same config file tetherctl uses."""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any, Iterable, Optional, Union

import grpc
import yaml

from tether.v1 import api_pb2, api_pb2_grpc

PathLike = Union[str, "os.PathLike[str]"]

# Workloads as large as the hub accepts (its bundle limit is 8 MiB of JSON by default).
_MESSAGE_LIMIT = 64 << 20


class ConfigError(Exception):
    """The config file is missing or not a tetherctl ClientConfig."""


class NotAvailable(Exception):
    """A workload did not become Available: its rollout halted, or the time ran out."""


def config_path(path: Optional[PathLike] = None) -> pathlib.Path:
    """`path`, else $TETHER_CONFIG, else ~/.tether/config.yaml (as tetherctl)."""
    if path:
        return pathlib.Path(path)
    env = os.environ.get("TETHER_CONFIG")
    if env:
        return pathlib.Path(env)
    return pathlib.Path.home() / ".tether" / "config.yaml"


def load_config(path: Optional[PathLike] = None) -> dict:
    """The ClientConfig: hub (HOST:PORT), user, and the PEM of ca, cert and key."""
    p = config_path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no tether config at {p} (pass a path or set TETHER_CONFIG; "
            "`tetherctl user create NAME -o NAME.yaml` writes one)"
        ) from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {p}: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ClientConfig":
        raise ConfigError(f"{p} is not a tetherctl config (kind: ClientConfig)")
    for field in ("hub", "ca", "cert", "key"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise ConfigError(f"{p}: {field} is missing")
    return doc


def connect(config: Optional[PathLike] = None) -> "Hub":
    """Dials the hub with the user's certificate (mutual TLS; the hub takes who you are from
    the certificate). Use as a context manager, or call close()."""
    c = load_config(config)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=c["ca"].encode(),
        private_key=c["key"].encode(),
        certificate_chain=c["cert"].encode(),
    )
    channel = grpc.secure_channel(
        c["hub"],
        credentials,
        options=[
            ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ],
    )
    return Hub(channel)


class Hub:
    """One connection. `api` is the generated tether.v1.HubApiService stub."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.api = api_pb2_grpc.HubApiServiceStub(channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def clusters(self) -> list:
        """The member clusters the caller may see."""
        return list(self.api.ListClusters(api_pb2.ListClustersRequest()).clusters)

    def apply(self, workload: dict, team: str = "") -> api_pb2.ApplyWorkloadResponse:
        """Creates or updates a Workload (a dict as in a Workload file). An unchanged
        workload is answered with changed=False and no new revision."""
        request = api_pb2.ApplyWorkloadRequest(workload_json=json.dumps(workload), team=team)
        return self.api.ApplyWorkload(request)

    def status(self, name: str) -> api_pb2.GetWorkloadStatusResponse:
        return self.api.GetWorkloadStatus(api_pb2.GetWorkloadStatusRequest(name=name))

    def wait_available(
        self, name: str, timeout: float = 300.0, interval: float = 1.0
    ) -> api_pb2.GetWorkloadStatusResponse:
        """Waits until every cluster the workload is placed on runs its current revision and
        is Available (what `tetherctl wait NAME --for available` waits for). Raises
        NotAvailable at once if its rollout halted, or when `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status(name)
            placed = [c for c in s.clusters if c.phase not in ("Removing", "Retiring")]
            waiting = [c for c in placed if not _available(c)]
            if placed and not waiting:
                return s
            rollout = self.api.GetRollout(api_pb2.GetRolloutRequest(name=name)).rollout
            if rollout.state == "Halted":
                raise NotAvailable(
                    f"workload/{name}: the rollout of revision {rollout.revision} halted: {rollout.reason}"
                )
            if time.monotonic() >= deadline:
                detail = ", ".join(_why(c) for c in waiting) or "placed on no cluster"
                raise NotAvailable(f"workload/{name} not available after {timeout:g}s: {detail}")
            time.sleep(interval)


def _available(c: Any) -> bool:
    # On the revision it should run, and that the current one (not held back by a rollout).
    return (
        c.phase == "Available"
        and not c.stale
        and c.reported_revision == c.revision
        and not c.outdated
    )


def _why(c: Any) -> str:
    phase = f"{c.phase} (stale)" if c.stale else c.phase
    if c.outdated:
        phase += " (a newer revision waits in the rollout)"
    return f"{c.cluster}: {phase}" + (f" {c.message}" if c.message else "")


def workloads_in(documents: Iterable[Any]) -> list:
    """The Workload documents of a parsed YAML stream (yaml.safe_load_all), others skipped."""
    return [d for d in documents if isinstance(d, dict) and d.get("kind") == "Workload"]
