"""Attendance: who was there, for how long, and what it counts for.

Pure rules here (intervals, the credit rule, check-in codes, spreadsheet
cells); what is stored and how it is gathered lives in
``server.storage.presence`` (the event-stream subscriber) and
``server.storage.attendance`` (check-ins, reports, corrections).
"""
