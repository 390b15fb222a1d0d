"""The REST API: Vapi-compatible phone numbers, credentials, OpenAPI document."""
