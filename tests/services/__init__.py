"""Services that exist only in the tests: the "Add a service" guide (docs/architecture.md), checked."""
