"""The HTTP layer: one module per resource; routers only translate HTTP to service calls."""
