"""Security tier: API keys, auth, rate limits and quotas, audit."""
