"""inferline eval: run a domain eval set against OpenAI-compatible endpoints and gate a rollout on the result."""
