"""Incidents: what failed or never arrived in a window, grouped by cause, with the fix and the retry.

One module a concern: `window` (the span and exact-call text), `scan` (reading failing events and the
triage scan), `groups` (cause signatures, keys, filters), `advice` (what a group says), `retry`
(retry_failed), `outcomes` (waiting for deliveries to settle), `progress` (throttled notifications),
`census` (every event of a window, and which matched no rule), `findings` (the silent causes),
`names` (near-miss event names), `replay` (replay_events and its copy markers), `norule` (what an emit
says when no rule takes the event), `timeline` (the incident view's failures per time bucket).
"""
