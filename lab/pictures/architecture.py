"""docs/pictures/architecture.svg: a stack's machines, hosts, services and ports, from its spec.

Everything drawn is read from the spec the stack's config loads to (the same
loader ``pulumi up`` and the lab use): which VM on which Proxmox host, its
address, the services its role runs and their ports, the VIP and its ports.
A changed port or a moved VM changes the picture; the test re-draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha import ClusterSpec
from pgha.spec import Node

from .svg import LINE_HEIGHT, Svg, text_width

SIZE = 12
SMALL = 11
PAD = 10
GAP = 20
ROW = SIZE * LINE_HEIGHT


@dataclass(frozen=True)
class Style:
    fill: str
    stroke: str
    label: str


ROLE_STYLES = {
    "postgres": Style("#e8f0fe", "#4a7bd0", "database VM"),
    "repository": Style("#e9f6e9", "#4a9a4a", "backup repository VM"),
    "witness": Style("#fff4e0", "#c08a20", "witness (etcd only)"),
    "restore": Style("#f3e8fd", "#8a4ad0", "restore VM"),
}
HOST_STYLE = Style("#f5f5f5", "#888888", "Proxmox host")
VIP_STYLE = Style("#fde8e8", "#c04040", "VIP")


def services(spec: ClusterSpec, node: Node) -> list[str]:
    """What the node runs, with its ports, as its role and the spec decide."""
    lines = []
    database = node.role == "postgres"
    if database:
        lines.append(f"PostgreSQL {spec.postgres.version} :{spec.postgres.port}")
        lines.append(f"Patroni REST API :{spec.patroni.rest_api_port}")
    if node in spec.quorum_nodes:
        lines.append(f"etcd member :{spec.etcd.client_port} clients :{spec.etcd.peer_port} peers")
    if database:
        haproxy = spec.haproxy
        lines.append(
            f"HAProxy :{haproxy.primary_port} rw :{haproxy.replica_port} ro :{haproxy.stats_port} stats"
        )
        lines.append(f"keepalived VRRP id {spec.keepalived.virtual_router_id}")
        if spec.pooler is not None:
            lines.append(f"PgBouncer :{spec.pooler.listen_port} (clients: VIP:{spec.pooler.port})")
        if spec.fast_path is not None:
            lines.append("fast path: VIP:5432 straight to PostgreSQL")
        if spec.backup is not None:
            lines.append("pgBackRest: archive-push, backups")
    if node.role == "repository" and spec.backup is not None:
        lines.append(f"pgBackRest repository :{spec.backup.tls_port} TLS")
    if spec.monitoring is not None and node.role != "witness":
        lines.append(f"metrics :{spec.monitoring.port} HTTPS")
    return lines


def _vm_lines(spec: ClusterSpec, node: Node) -> tuple[str, str, list[str]]:
    style = ROLE_STYLES[node.role]
    return f"{node.name} {node.ip}", style.label, services(spec, node)


def _vm_size(spec: ClusterSpec, node: Node) -> tuple[float, float]:
    header, label, lines = _vm_lines(spec, node)
    width = max(
        text_width(header, SIZE), text_width(label, SMALL), *(text_width(line, SMALL) for line in lines)
    )
    return width + 2 * PAD, (2 + len(lines)) * ROW + PAD + 4


def draw(spec: ClusterSpec, source: str) -> str:
    """The picture's SVG text; ``source`` names the config it was drawn from, for the caption."""
    svg = Svg(f"pgha stack {spec.stack}: machines, services and ports")
    svg.text(GAP, GAP + SIZE, f"pgha, stack {spec.stack}: what runs where", 15, bold=True)
    svg.text(GAP, GAP + SIZE + 18, f"drawn from {source} by `python -m lab pictures architecture`", SMALL)

    columns = []
    for host in spec.hosts:
        nodes = [n for n in spec.nodes if n.host == host]
        sizes = [_vm_size(spec, n) for n in nodes]
        width = max(w for w, _ in sizes) + 2 * PAD
        height = ROW + PAD + sum(h + PAD for _, h in sizes)
        columns.append((host, nodes, sizes, width, height))
    total_width = sum(c[3] for c in columns) + GAP * (len(columns) - 1)

    # The VIP, what clients connect to.
    top = GAP + 50
    vip_lines = [
        f"VIP {spec.vip}",
        f":{spec.haproxy.primary_port} read-write (the primary), :{spec.haproxy.replica_port} read-only"
        + (f", :{spec.pooler.port} pooled" if spec.pooler is not None else ""),
        "held by one database VM's keepalived, near the primary",
    ]
    vip_width = max(text_width(line, SIZE) for line in vip_lines) + 2 * PAD
    vip_left = GAP + max(0.0, (total_width - vip_width) / 2)
    vip_height = len(vip_lines) * ROW + PAD
    svg.rect(vip_left, top, vip_width, vip_height, VIP_STYLE.fill, VIP_STYLE.stroke, 6)
    for index, line in enumerate(vip_lines):
        svg.text(vip_left + PAD, top + PAD + SIZE + index * ROW, line, SIZE, bold=index == 0)

    # The private network every machine is on.
    net_top = top + vip_height + GAP
    network = spec.network
    where = f"bridge {network.bridge}" if network.bridge else f"SDN vnet {network.sdn.vnet}"
    net_text = f"private network {network.cidr} on {where}, gateway {network.gateway}"
    net_width = max(total_width, text_width(net_text, SIZE) + 2 * PAD)
    svg.line(vip_left + vip_width / 2, top + vip_height, vip_left + vip_width / 2, net_top, VIP_STYLE.stroke)
    svg.rect(GAP, net_top, net_width, ROW + PAD, "#eeeeee", "#999999", 4)
    svg.text(GAP + PAD, net_top + PAD / 2 + SIZE, net_text, SIZE)

    left = GAP
    host_top = net_top + ROW + PAD + GAP
    for host, nodes, sizes, width, height in columns:
        external = all(n.external for n in nodes)
        svg.line(left + width / 2, net_top + ROW + PAD, left + width / 2, host_top, "#999999", "3,3")
        svg.rect(left, host_top, width, height, HOST_STYLE.fill, HOST_STYLE.stroke, 8)
        svg.text(
            left + PAD,
            host_top + PAD + SIZE,
            f"{'machine' if external else 'Proxmox host'} {host}",
            13,
            bold=True,
        )
        y = host_top + ROW + PAD
        for node, (vm_width, vm_height) in zip(nodes, sizes, strict=True):
            style = ROLE_STYLES[node.role]
            svg.rect(left + PAD, y, vm_width, vm_height, style.fill, style.stroke, 4)
            header, label, lines = _vm_lines(spec, node)
            svg.text(left + 2 * PAD, y + PAD + SIZE, header, SIZE, bold=True)
            svg.text(left + 2 * PAD, y + PAD + SIZE + ROW, label, SMALL, fill="#555")
            for index, line in enumerate(lines):
                svg.text(left + 2 * PAD, y + PAD + SIZE + (index + 2) * ROW, line, SMALL)
            y += vm_height + PAD
        left += width + GAP
    return svg.render(GAP)
