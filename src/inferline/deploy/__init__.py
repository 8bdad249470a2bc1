"""Kubernetes deployment: the `deploy:` config section, the Helm chart values it renders, `inferline deploy`."""
