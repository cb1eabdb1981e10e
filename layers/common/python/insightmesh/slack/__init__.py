"""Slack: request verification, Events API classification, the Web API client, mrkdwn formatting."""
