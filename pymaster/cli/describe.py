"""pyctl's describe output: kubectl describe pod / describe node, and kubectl's generic describer
for kinds without a describer of their own (events), as pure functions of the objects, the events
about them and the current time.

The lines are built with tabs between a label and its value and aligned by
``printers.tabwrite`` over the whole output, as kubectl's describe does through Go's tabwriter
(padding 2), so consecutive labels line up and a line without a tab starts a new block.
``describe node`` adds a Usage section (the agent's latest psutil report) that Kubernetes has no
field for. Every describe ends with kubectl's Events section (``events_lines``); ``events=None``
(the events could not be listed) leaves it out, as kubectl does.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from pymaster.api import manifest, objects_pb2
from pymaster.api.pods import TERMINAL_PHASES, effective_requests, qos_class
from pymaster.api.quantity import format_bytes, format_cpu_millis
from pymaster.api.taints import format_taint
from pymaster.cli import printers as p
from pymaster.cli import timefmt

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
# Words kubectl's generic describer spells in capitals ("apiVersion" -> "API Version").
_ACRONYMS = ("API", "URL", "UID", "OSB", "GUID")
# What the generic describer prints before the object's other fields.
_GENERIC_SKIP = frozenset(f".metadata.{name}" for name in ("name", "namespace", "labels", "annotations"))


def pod_resources(pod: objects_pb2.Pod) -> tuple[int, int, int, int]:
    """(cpu request millis, cpu limit millis, memory request bytes, memory limit bytes) summed over
    the pod's containers. A container with a limit and no request requests its limit
    (Kubernetes' defaulting); unparsable quantities count as 0."""
    cpu_req = cpu_lim = mem_req = mem_lim = 0
    for container in pod.spec.containers:
        requests, limits = effective_requests(container.resources), container.resources.limits
        cpu_req += p.parse_cpu(requests.get("cpu", "0")) or 0
        cpu_lim += p.parse_cpu(limits.get("cpu", "0")) or 0
        mem_req += p.parse_memory(requests.get("memory", "0")) or 0
        mem_lim += p.parse_memory(limits.get("memory", "0")) or 0
    return cpu_req, cpu_lim, mem_req, mem_lim


def _multiline_map(key: str, values: Mapping[str, str], indent: str = "") -> list[str]:
    """kubectl's labels block: the first pair after the key, the rest aligned beneath it."""
    pairs = [f"{k}={v}" for k, v in sorted(values.items())] or [p.NONE]
    lines = [f"{indent}{key}:\t{pairs[0]}"]
    lines.extend(f"{indent}\t{pair}" for pair in pairs[1:])
    return lines


def _quantity_block(key: str, values: Mapping[str, str], indent: str) -> list[str]:
    if not values:
        return []
    lines = [f"{indent}{key}:"]
    lines.extend(f"{indent}  {name}:\t{value}" for name, value in sorted(values.items()))
    return lines


def _container_state(
    label: str, state: objects_pb2.ContainerState, indent: str, tz: datetime.tzinfo | None
) -> list[str]:
    inner = indent + "  "
    if state.HasField("running"):
        lines = [f"{indent}{label}:\tRunning"]
        if state.running.HasField("started_at"):
            lines.append(f"{inner}Started:\t{timefmt.format_time(state.running.started_at, tz)}")
        return lines
    if state.HasField("terminated"):
        term = state.terminated
        lines = [f"{indent}{label}:\tTerminated"]
        if term.reason:
            lines.append(f"{inner}Reason:\t{term.reason}")
        if term.message:
            lines.append(f"{inner}Message:\t{p.one_line(term.message)}")
        lines.append(f"{inner}Exit Code:\t{term.exit_code}")
        if term.signal:
            lines.append(f"{inner}Signal:\t{term.signal}")
        if term.HasField("started_at"):
            lines.append(f"{inner}Started:\t{timefmt.format_time(term.started_at, tz)}")
        if term.HasField("finished_at"):
            lines.append(f"{inner}Finished:\t{timefmt.format_time(term.finished_at, tz)}")
        return lines
    lines = [f"{indent}{label}:\tWaiting"]
    if state.HasField("waiting") and state.waiting.reason:
        lines.append(f"{inner}Reason:\t{state.waiting.reason}")
    if state.HasField("waiting") and state.waiting.message:
        lines.append(f"{inner}Message:\t{p.one_line(state.waiting.message)}")
    return lines


def _ports(ports: Iterable[objects_pb2.ContainerPort], host: bool) -> str:
    return ", ".join(f"{p.host_port if host else p.container_port}/{p.protocol or 'TCP'}" for p in ports)


def _int_or_string(value: objects_pb2.IntOrString) -> str:
    return value.str_value if value.WhichOneof("value") == "str_value" else str(value.int_value)


def describe_probe(probe: objects_pb2.Probe) -> str:
    """A probe on one line, as kubectl describe prints it:
    ``exec [cat /tmp/healthy] delay=5s timeout=1s period=5s #success=1 #failure=3``."""
    attrs = (
        f"delay={probe.initial_delay_seconds}s timeout={probe.timeout_seconds}s "
        f"period={probe.period_seconds}s "
        f"#success={probe.success_threshold} #failure={probe.failure_threshold}"
    )
    if probe.HasField("exec"):
        return f"exec [{' '.join(probe.exec.command)}] {attrs}"
    if probe.HasField("http_get"):
        get = probe.http_get
        host = get.host if ":" not in get.host else f"[{get.host}]"
        url = f"{(get.scheme or 'HTTP').lower()}://{host}:{_int_or_string(get.port)}{get.path}"
        return f"http-get {url} {attrs}"
    if probe.HasField("tcp_socket"):
        return f"tcp-socket {probe.tcp_socket.host}:{_int_or_string(probe.tcp_socket.port)} {attrs}"
    return f"grpc <pod>:{probe.grpc.port} {probe.grpc.service} {attrs}"


def _container_lines(
    container: objects_pb2.Container, status: objects_pb2.ContainerStatus | None, tz: datetime.tzinfo | None
) -> list[str]:
    ind = "    "
    lines = [f"  {container.name}:"]
    if status is not None and status.container_id:
        lines.append(f"{ind}Container ID:\t{status.container_id}")
    lines.append(f"{ind}Image:\t{container.image}")
    if status is not None and status.image_id:
        lines.append(f"{ind}Image ID:\t{status.image_id}")
    ports, host_ports = _ports(container.ports, False), _ports(container.ports, True)
    lines.append(f"{ind}{'Ports' if ',' in ports else 'Port'}:\t{ports or p.NONE}")
    lines.append(f"{ind}{'Host Ports' if ',' in host_ports else 'Host Port'}:\t{host_ports or p.NONE}")
    for key, words in (("Command", container.command), ("Args", container.args)):
        if words:
            lines.append(f"{ind}{key}:")
            lines.extend(f"{ind}  {word}" for word in words)
    state = status.state if status is not None else objects_pb2.ContainerState()
    lines += _container_state("State", state, ind, tz)
    if status is not None and status.last_state.HasField("terminated"):
        lines += _container_state("Last State", status.last_state, ind, tz)
    ready = status is not None and status.ready
    lines.append(f"{ind}Ready:\t{ready}")
    lines.append(f"{ind}Restart Count:\t{status.restart_count if status is not None else 0}")
    lines += _quantity_block("Limits", container.resources.limits, ind)
    lines += _quantity_block("Requests", container.resources.requests, ind)
    for label, field in (("Liveness", "liveness_probe"), ("Readiness", "readiness_probe"),
                         ("Startup", "startup_probe")):
        if container.HasField(field):
            lines.append(f"{ind}{label}:\t{describe_probe(getattr(container, field))}")
    if container.env:
        lines.append(f"{ind}Environment:")
        lines.extend(f"{ind}  {env.name}:\t{env.value}" for env in container.env)
    else:
        lines.append(f"{ind}Environment:\t{p.NONE}")
    return lines


def describe_pod(
    pod: objects_pb2.Pod,
    now: float,
    tz: datetime.tzinfo | None = None,
    events: Sequence[objects_pb2.Event] | None = (),
) -> str:
    """kubectl describe pod: metadata, status, every container, conditions, events.

    Args:
        pod: the pod.
        now: current epoch seconds (for "Terminating (lasts 25s)" and the events' ages).
        tz: zone for times; None for the local zone.
        events: the events about the pod; None leaves the Events section out.
    """
    meta, spec, status = pod.metadata, pod.spec, pod.status
    node = spec.node_name or p.NONE
    if spec.node_name and status.host_ip:
        node = f"{spec.node_name}/{status.host_ip}"
    lines = [
        f"Name:\t{meta.name}",
        f"Namespace:\t{meta.namespace}",
        f"Node:\t{node}",
    ]
    if status.HasField("start_time"):
        lines.append(f"Start Time:\t{timefmt.format_time(status.start_time, tz)}")
    lines += _multiline_map("Labels", meta.labels)
    lines += _multiline_map("Annotations", meta.annotations)
    if meta.HasField("deletion_timestamp"):
        lasts = timefmt.human_duration(timefmt.timestamp_seconds(meta.deletion_timestamp) - now)
        lines.append(f"Status:\tTerminating (lasts {lasts})")
        lines.append(f"Termination Grace Period:\t{meta.deletion_grace_period_seconds}s")
    else:
        lines.append(f"Status:\t{status.phase or 'Pending'}")
    if status.reason:
        lines.append(f"Reason:\t{status.reason}")
    if status.message:
        lines.append(f"Message:\t{p.one_line(status.message)}")
    lines.append(f"IP:\t{status.pod_ip}")
    if status.pod_ip:
        lines += ["IPs:", f"  IP:\t{status.pod_ip}"]
    statuses = {cs.name: cs for cs in [*status.init_container_statuses, *status.container_statuses]}
    if spec.init_containers:
        lines.append("Init Containers:")
        for container in spec.init_containers:
            lines += _container_lines(container, statuses.get(container.name), tz)
    lines.append("Containers:")
    for container in spec.containers:
        lines += _container_lines(container, statuses.get(container.name), tz)
    if status.conditions:
        lines += ["Conditions:", "  Type\tStatus"]
        lines.extend(f"  {c.type} \t{c.status} " for c in status.conditions)
    lines.append(f"QoS Class:\t{qos_class(pod)}")
    lines += _multiline_map("Node-Selectors", spec.node_selector)
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def node_roles(node: objects_pb2.Node) -> str:
    """kubectl's ROLES: the X of every node-role.kubernetes.io/X label, "<none>" without any."""
    roles = sorted(k[len(NODE_ROLE_PREFIX):] for k in node.metadata.labels if k.startswith(NODE_ROLE_PREFIX))
    return ",".join(role for role in roles if role) or p.NONE


def _percent(value: int, total: int | None) -> str:
    return f"{int(value / total * 100)}%" if total else "0%"


def _optional_time(msg: Message, name: str, tz: datetime.tzinfo | None) -> str:
    return timefmt.format_time(getattr(msg, name), tz) if msg.HasField(name) else ""


def _node_usage_lines(node: objects_pb2.Node, now: float, tz: datetime.tzinfo | None) -> list[str]:
    if not p.has_usage(node):
        return [f"Usage:\t{timefmt.UNKNOWN}"]
    usage = node.status.usage
    used, available = usage.memory_used_bytes, usage.memory_available_bytes
    disk = f"{p.human_bytes(usage.disk_used_bytes)} used of {p.human_bytes(usage.disk_total_bytes)}"
    if usage.disk_total_bytes:
        disk += f" ({_percent(usage.disk_used_bytes, usage.disk_total_bytes)})"
    ago = timefmt.human_duration(now - timefmt.timestamp_seconds(usage.timestamp))
    reported = f"{timefmt.format_time(usage.timestamp, tz)} ({ago} ago)"
    return [
        "Usage:",
        f"  CPU:\t{usage.cpu_percent:.1f}%",
        f"  Memory:\t{p.human_bytes(used)} used, {p.human_bytes(available)} available",
        f"  Disk:\t{disk}",
        f"  Load Average:\t{usage.load1:.2f}, {usage.load5:.2f}, {usage.load15:.2f}",
        f"  Running Pods:\t{usage.running_pods}",
        f"  Running Containers:\t{usage.running_containers}",
        f"  Reported:\t{reported}",
    ]


def describe_node(
    node: objects_pb2.Node,
    pods: Sequence[objects_pb2.Pod],
    now: float,
    tz: datetime.tzinfo | None = None,
    events: Sequence[objects_pb2.Event] | None = (),
) -> str:
    """kubectl describe node, plus a Usage section with the agent's latest resource report.

    Args:
        node: the node.
        pods: the pods bound to it; terminated ones (Succeeded/Failed) are left out here.
        now: current epoch seconds.
        tz: zone for times; None for the local zone.
        events: the events about the node; None leaves the Events section out.
    """
    meta, status = node.metadata, node.status
    lines = [f"Name:\t{meta.name}", f"Roles:\t{node_roles(node)}"]
    lines += _multiline_map("Labels", meta.labels)
    lines += _multiline_map("Annotations", meta.annotations)
    if meta.HasField("creation_timestamp"):
        lines.append(f"CreationTimestamp:\t{timefmt.format_time(meta.creation_timestamp, tz)}")
    taints = [format_taint(t) for t in node.spec.taints] or [p.NONE]
    lines.append(f"Taints:\t{taints[0]}")
    lines.extend(f"\t{taint}" for taint in taints[1:])
    lines.append(f"Unschedulable:\t{str(node.spec.unschedulable).lower()}")
    if status.conditions:
        lines += [
            "Conditions:",
            "  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
            "  ----\t------\t-----------------\t------------------\t------\t-------",
        ]
        for c in status.conditions:
            heartbeat = _optional_time(c, "last_heartbeat_time", tz)
            transition = _optional_time(c, "last_transition_time", tz)
            lines.append(f"  {c.type}\t{c.status}\t{heartbeat}\t{transition}\t{c.reason}\t{c.message}")
    else:
        lines.append(f"Conditions:\t{p.NONE}")
    if status.addresses:
        lines.append("Addresses:")
        lines.extend(f"  {a.type}:\t{a.address}" for a in status.addresses)
    else:
        lines.append(f"Addresses:\t{p.NONE}")
    lines += _quantity_block("Capacity", status.capacity, "")
    lines += _quantity_block("Allocatable", status.allocatable, "")
    info = status.node_info
    if info.ByteSize():
        lines += [
            "System Info:",
            f"  Machine ID:\t{info.machine_id}",
            f"  Boot ID:\t{info.boot_id}",
            f"  Kernel Version:\t{info.kernel_version}",
            f"  OS Image:\t{info.os_image}",
            f"  Operating System:\t{info.operating_system}",
            f"  Architecture:\t{info.architecture}",
            f"  Container Runtime Version:\t{info.container_runtime_version}",
            f"  Kubelet Version:\t{info.kubelet_version}",
        ]
    lines += _node_usage_lines(node, now, tz)
    lines += _node_pod_lines(node, pods, now)
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def _node_pod_lines(node: objects_pb2.Node, pods: Sequence[objects_pb2.Pod], now: float) -> list[str]:
    allocatable = node.status.allocatable or node.status.capacity
    cpu_total = p.parse_cpu(allocatable["cpu"]) if "cpu" in allocatable else None
    mem_total = p.parse_memory(allocatable["memory"]) if "memory" in allocatable else None

    def cpu(m: int) -> str:
        return f"{format_cpu_millis(m)} ({_percent(m, cpu_total)})"

    def mem(n: int) -> str:
        return f"{format_bytes(n)} ({_percent(n, mem_total)})"

    running = [pod for pod in pods if pod.status.phase not in TERMINAL_PHASES]
    lines = [f"Non-terminated Pods:\t({len(running)} in total)"]
    totals = [0, 0, 0, 0]
    if running:
        lines += [
            "  Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge",
            "  ---------\t----\t------------\t----------\t---------------\t-------------\t---",
        ]
    for pod in running:
        resources = pod_resources(pod)
        totals = [t + r for t, r in zip(totals, resources, strict=True)]
        cpu_req, cpu_lim, mem_req, mem_lim = resources
        meta = pod.metadata
        pod_age = timefmt.age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp"))
        cells = [meta.namespace, meta.name, cpu(cpu_req), cpu(cpu_lim), mem(mem_req), mem(mem_lim), pod_age]
        lines.append("  " + "\t".join(cells))
    cpu_req, cpu_lim, mem_req, mem_lim = totals
    lines += [
        "Allocated resources:",
        "  (Total limits may be over 100 percent, i.e., overcommitted.)",
        "  Resource\tRequests\tLimits",
        "  --------\t--------\t------",
        f"  cpu\t{cpu(cpu_req)}\t{cpu(cpu_lim)}",
        f"  memory\t{mem(mem_req)}\t{mem(mem_lim)}",
    ]
    return lines


# ---- events ----


def event_age(event: objects_pb2.Event, now: float) -> str:
    """The Age column of describe's Events: since the first time, or for a repeated event
    "20s (x3 over 1m)": since the last time, the count, since the first time."""
    first = timefmt.age(event.first_timestamp, now, present=event.HasField("first_timestamp"))
    if event.count > 1:
        last = timefmt.age(event.last_timestamp, now, present=event.HasField("last_timestamp"))
        return f"{last} (x{event.count} over {first})"
    return first


def events_lines(events: Sequence[objects_pb2.Event] | None, now: float) -> list[str]:
    """kubectl's Events section: ``Events:  <none>``, or a Type/Reason/Age/From/Message table
    sorted by the last time each event happened; nothing when ``events`` is None."""
    if events is None:
        return []
    if not events:
        return [f"Events:\t{p.NONE}"]
    lines = ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
    for event in sorted(events, key=lambda e: timefmt.timestamp_seconds(p.event_last_seen(e))):
        source = event.source.component or event.reporting_component
        cells = [event.type, event.reason, event_age(event, now), source, p.one_line(event.message)]
        lines.append("  " + "\t".join(cells))
    return lines


# ---- kinds without a describer of their own ----


def smart_label(field: str) -> str:
    """kubectl's label for a JSON field: camel case split into capitalised words, acronyms in
    capitals ("involvedObject" -> "Involved Object", "apiVersion" -> "API Version"); a field with
    characters other than letters and "-" is kept as it is."""
    if not field or any(not (c.isalpha() or c == "-") for c in field):
        return field
    runs: list[str] = []
    last_class = -1
    for c in field:
        cls = 0 if c.islower() else 1 if c.isupper() else 2
        if cls == last_class:
            runs[-1] += c
        else:
            runs.append(c)
        last_class = cls
    for i in range(len(runs) - 1):  # "HTTPServer": the last capital starts the next word
        if runs[i] and runs[i][0].isupper() and runs[i + 1][0].islower():
            runs[i], runs[i + 1] = runs[i][:-1], runs[i][-1] + runs[i + 1]
    words = [w.upper() if w.upper() in _ACRONYMS else w[:1].upper() + w[1:] for w in runs if w]
    return " ".join(words)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _content_lines(content: Mapping[str, Any], level: int, prefix: str) -> list[str]:
    """kubectl's printUnstructuredContent: every field, keys sorted, nested maps and lists indented."""
    indent = "  " * level
    lines: list[str] = []
    for field in sorted(content):
        value, path = content[field], f"{prefix}.{field}"
        if path in _GENERIC_SKIP:
            continue
        if isinstance(value, dict):
            lines.append(f"{indent}{smart_label(field)}:")
            lines += _content_lines(value, level + 1, path)
        elif isinstance(value, list):
            lines.append(f"{indent}{smart_label(field)}:")
            for item in value:
                if isinstance(item, dict):
                    lines += _content_lines(item, level + 1, path)
                else:
                    lines.append(f"{indent}  {_scalar_text(item)}")
        else:
            lines.append(f"{indent}{smart_label(field)}:\t{_scalar_text(value)}")
    return lines


def describe_object(obj: Any, now: float, events: Sequence[objects_pb2.Event] | None = ()) -> str:
    """kubectl's generic describer, for a kind without a describer of its own: name, namespace,
    labels and annotations, then every other field of the object's JSON form (keys sorted,
    times as RFC 3339), then its events.

    Args:
        obj: the object (an Event ...).
        now: current epoch seconds (the events' ages).
        events: the events about the object; None leaves the Events section out.
    """
    meta = obj.metadata
    lines = [f"Name:\t{meta.name}", f"Namespace:\t{meta.namespace}"]
    lines += _multiline_map("Labels", meta.labels)
    lines += _multiline_map("Annotations", meta.annotations)
    lines += _content_lines(manifest.to_dict(obj), 0, "")
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)
