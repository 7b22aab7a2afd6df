"""Cross-cutting concerns: request ids, logging."""
