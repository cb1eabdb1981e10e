"""The directory: users, provider identities, groups, memberships, grants and permission checks.

* ``models`` — the pynamodb models and the access patterns of their tables.
* ``users`` — resolve a Slack user to a directory user (creating it on first contact) and the
  system groups.
* ``permissions`` — may this user use this agent (fail closed), and which agents may they use.

Import the submodules directly; this package imports nothing so that importing it stays cheap.
"""
