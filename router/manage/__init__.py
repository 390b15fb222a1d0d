"""The services behind the REST API: numbers, credentials and orgs, their documents and
secrets, and the wiring of provider numbers to this router."""
