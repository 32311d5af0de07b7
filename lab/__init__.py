"""The local lab: real Debian 13 machines (systemd-nspawn) standing in for Proxmox VMs.

Layered, each layer importing only from those before it (tests/tooling checks
it, and that no import circle exists among the lab's modules):

- ``wait``: the one polling helper and the time limits $PGHA_TIMEOUT_FACTOR stretches;
- ``machines``: images, machines, the network namespace, SSH, and ``LabAccess``
  (a stack's lab as it stands: identity, machines, the ways in);
- ``observation``: reading a live lab (Patroni, the VIP, etcd, Prometheus) and
  the clients that measure it (writers, readers, probes);
- ``cluster``: ``Lab``, the verbs (up, apply, replace, down, the rolling
  update), and the operator's commands (switchover);
- ``faults``: what breaks a running lab, and the harness that measures a fault;
- ``scenarios``: benches, drills and the other runs made of the layers below;
- ``pictures``: the docs' pictures, drawn from a stack's spec, the benches'
  data and a running lab's Prometheus;
- ``__main__``: the command line (``python -m lab``).
"""

LAYERS = ("wait", "machines", "observation", "cluster", "faults", "scenarios", "pictures", "__main__")
