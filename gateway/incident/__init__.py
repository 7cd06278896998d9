"""Incident response: on-call, escalation, rooms, commands, cases."""
