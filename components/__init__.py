"""pgha's components: the pure core (``components.core``) and the Pulumi shell.

Kept import-free so ``python -m components.render`` works without Pulumi.
"""
