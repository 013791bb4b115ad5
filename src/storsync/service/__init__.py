"""Use cases and wiring of the service: repositories, users and tokens, sessions, events."""
