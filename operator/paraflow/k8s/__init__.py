"""Kubernetes side: pure builders of child objects, and thin async adapters over the client."""
