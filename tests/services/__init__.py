"""Services that exist only in the tests: the "Add a service" guide (dev/architecture.md), checked."""
