"""Liveness and readiness of the deployed stack."""
