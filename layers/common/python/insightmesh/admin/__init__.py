"""The control plane's domain services: agents, grants, groups and members, users, audit, me.

* ``schemas`` — the pydantic request and response models (the API's boundary).
* ``agents``, ``grants``, ``groups``, ``users`` — service functions by resource, speaking in
  domain terms; each documents the DynamoDB calls it makes. A mutation and its audit entry are one
  transaction (:class:`insightmesh.audit.tx.Tx`).
* ``routes`` — ``register_admin_routes(app)``: the HTTP routes under ``/api``.

Every request-path read is a GetItem, Query or BatchGetItem on a designed key or index, and a
list page costs a constant number of calls whatever the number of records.
"""
