"""The local lab: real Debian 13 machines (systemd-nspawn) standing in for Proxmox VMs."""
