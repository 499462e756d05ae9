"""The HTTP API's routes, one module per area, and the HTTP edge's guards."""
