"""Provider credentials: envelope-encrypted OAuth tokens, the Google connect flow.

* :mod:`~insightmesh.credentials.service` — what handlers and job types call:
  ``start_google_authorization``, ``complete_google_authorization``, ``list_credentials``,
  ``get_credential_summary``, ``delete_credential`` and, for jobs, ``google_access_token``;
* :mod:`~insightmesh.credentials.routes` — ``register_credential_routes(app)`` (``/api/credentials``);
* :mod:`~insightmesh.credentials.models` — the tables and the status rule;
* :mod:`~insightmesh.credentials.crypto` — KMS envelope encryption (``seal`` / ``unseal``);
* :mod:`~insightmesh.credentials.google` — Google's OAuth endpoints (authlib), settings;
* :mod:`~insightmesh.credentials.schemas` — names, scopes, the summary shown by the API;
* :mod:`~insightmesh.credentials.errors` — :class:`CredentialError` and its kinds;
* :mod:`~insightmesh.credentials.pages` — the callback's HTML pages (escaped).

Nothing is imported here, so importing the package costs nothing at a cold start.
"""
