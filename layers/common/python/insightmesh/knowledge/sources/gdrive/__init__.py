"""Google Drive as a knowledge source: the Drive API (``drive_api``), Drive permissions as principals
(``acl``), the checkpoint (``state``) and the ``gdrive_ingest`` job type (``job``)."""
