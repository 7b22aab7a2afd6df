"""API keys and authentication, rate limits and quotas per key, and the audit trail."""
