"""Scheduled jobs: job types, the job and task-run models, schedules, the runner."""
