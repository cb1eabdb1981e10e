"""Authentication and authorisation of the control plane: OIDC browser sessions and API tokens."""
