"""The webhook pipeline, stage by stage, provider-neutral:

    provider plug-in (router.providers: verify, parse)
    → `inbound_call` (the call as every provider hands it on)
    → `number_cache` (the called number, without I/O when warm)
    → `decide` (SPEC §5) → `decision` (what it returns), with `assistant_request` (SPEC §6)
    → `call_records` (what was decided, for the runtime and for status events)
    → provider plug-in (render)

`inbound` runs those stages for one webhook inside the provider's budget.
"""
