"""The calendar: events, recurrence (RFC 5545), the iCalendar feed and import, reminders."""
