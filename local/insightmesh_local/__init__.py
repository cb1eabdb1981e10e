"""The Docker-free local runtime and the `insightmesh` CLI (development tools, never deployed).

It reads ``infra/template.yaml`` and plays the parts of AWS that an emulator (moto) does not:
API Gateway, Lambda's execution environments, SQS event source mappings, schedules and TTL.
"""
