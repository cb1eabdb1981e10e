"""The audit log: who did what to which resource, when, allowed or denied, with before and after.

* ``log`` — the :class:`~insightmesh.audit.log.AuditEntry` model, :func:`~insightmesh.audit.log.record`
  (one PutItem, or an item of the caller's transaction) and :func:`~insightmesh.audit.log.query`.
* ``tx`` — :class:`~insightmesh.audit.tx.Tx`: one ``TransactWriteItems`` per mutation, the change,
  its conditions and its audit entry together; a failed condition becomes its 404/409.

Import the submodule directly; this package imports nothing so that importing it stays cheap.
"""
