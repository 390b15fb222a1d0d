"""Deciding where an inbound call goes: provider-neutral, pure apart from the injected
assistant-request client.

`inbound` (the call), `decide` (SPEC §5), `decision` (what it returns),
`assistant_request` (the client of SPEC §6).
"""
