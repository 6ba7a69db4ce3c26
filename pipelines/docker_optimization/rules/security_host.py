"""Security rules SE004, SE005, SE010, SE011: compose services given the host (its Docker socket, privileges,
every capability, its network)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.rules import Hit, per_file, rule
from agent_pipelines.pipelines.docker_optimization.rules.security_secrets import _item_line, _line

DOCKER_SOCKET = re.compile(r"(?:^|/)docker\.sock$")


# -- SE004 -------------------------------------------------------------------
def _volume_source(volume: object) -> str:
    if isinstance(volume, dict):
        return str(volume.get("source", "") or "")
    return str(volume).split(":", 1)[0] if volume is not None else ""


@rule("SE004", "docker-socket-mounted", Category.security, Severity.error, "project", reads=("dockerfiles", "composes"))
def docker_socket_mounted(project) -> Iterable[Hit]:
    """The Docker socket is mounted into a container (compose `volumes`) or a build step (`RUN --mount`).

    In a Dockerfile, a bind mount's source comes from the build context or a
    named context (`--build-context`), so the mount either fails or means a
    build step is meant to drive the host's engine; both are flagged.

    Why: whoever talks to the Docker socket can start a privileged container
    with the host's filesystem mounted: the socket is root on the host. A
    compromise of the service (or of a build step's dependencies) becomes a
    compromise of the machine.

    Example:
        services:
          ci:
            volumes:
              - /var/run/docker.sock:/var/run/docker.sock

    Use instead:
        a socket proxy that allows only the API calls the service needs
        (e.g. tecnativa/docker-socket-proxy, read-only), or a rootless engine.
    """
    parsed = [df for df in project.dockerfiles.values() if not df.error]
    yield from per_file(project, "SE004 dockerfiles", parsed, _build_step_sockets)  # each file's kept while unchanged
    yield from per_file(project, "SE004 composes", project.composes, _service_sockets)


def _build_step_sockets(df) -> Iterable[Hit]:
    for ins in df.of("RUN"):
        for mount in ins.mounts():
            if any(DOCKER_SOCKET.search(mount.get(k, "")) for k in ("source", "src", "target", "dst")):
                yield Hit(
                    ins.start_line,
                    "a build step mounts the Docker socket: it can control the engine",
                    ins.original,
                    ins.end_line,
                    file=df.path,
                )
                break


def _service_sockets(compose) -> Iterable[Hit]:
    for name, svc in compose.services.items():
        volumes = svc.get("volumes") if isinstance(svc, dict) else None
        if not isinstance(volumes, list):
            continue
        for index, volume in enumerate(volumes):
            if DOCKER_SOCKET.search(_volume_source(volume)):
                yield Hit(
                    _item_line(volumes, index, compose.line_of(name)),
                    f"service {name} mounts the Docker socket: root on the host",
                    f"{name}: {_volume_source(volume)}",
                    file=compose.path,
                )


# -- SE005, SE010, SE011 ---------------------------------------------------
@rule("SE005", "privileged-container", Category.security, Severity.error, "service")
def privileged_container(svc) -> Iterable[Hit]:
    """A compose service runs with `privileged: true`.

    Why: a privileged container has every capability, every device and no
    seccomp/AppArmor confinement: it can mount the host's disks and load
    kernel modules. Escaping it is trivial.

    Example:
        services:
          agent:
            privileged: true

    Use instead:
        services:
          agent:
            cap_add: [NET_ADMIN]   # only the capability it needs
    """
    if str(svc.data.get("privileged", "")).lower() == "true":
        yield Hit(
            _line(svc.data, "privileged", svc.line),
            f"service {svc.name} is privileged: no isolation from the host",
            f"{svc.name}: privileged: true",
        )


@rule("SE010", "all-capabilities", Category.security, Severity.warning, "service")
def all_capabilities(svc) -> Iterable[Hit]:
    """A compose service adds every Linux capability (`cap_add: [ALL]`).

    Why: ALL includes SYS_ADMIN, SYS_MODULE, SYS_PTRACE and the like: close
    to privileged. Few services need more than one or two capabilities.

    Example:
        cap_add: [ALL]

    Use instead:
        cap_drop: [ALL]
        cap_add: [NET_BIND_SERVICE]
    """
    caps = svc.data.get("cap_add")
    if isinstance(caps, list) and any(str(c).upper() in ("ALL", "CAP_ALL") for c in caps):
        yield Hit(
            _line(svc.data, "cap_add", svc.line),
            f"service {svc.name} adds every capability",
            f"{svc.name}: cap_add: ALL",
        )


@rule("SE011", "host-network", Category.security, Severity.warning, "service")
def host_network(svc) -> Iterable[Hit]:
    """A compose service uses the host's network stack (`network_mode: host`).

    Why: the container sees every interface and port of the host, including
    services bound to localhost (databases, the metadata endpoint, admin
    ports); compose networks, port mappings and isolation no longer apply.

    Example:
        network_mode: host

    Use instead:
        ports: ["8080:8080"]
    """
    if str(svc.data.get("network_mode", "")).lower() == "host":
        yield Hit(
            _line(svc.data, "network_mode", svc.line),
            f"service {svc.name} shares the host's network",
            f"{svc.name}: network_mode: host",
        )
