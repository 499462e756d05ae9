"""Pure business rules of Gatekeeper: no I/O, no framework imports."""
