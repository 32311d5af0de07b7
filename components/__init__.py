"""pgha's Pulumi shell: ComponentResources that wire the pure core (``pgha``) to Proxmox and SSH."""
