"""Pure translation between wire formats: no IO, kept apart from auth and transport."""
