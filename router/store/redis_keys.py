"""Every Redis key, channel, TTL and write script router uses, in one place (units in the names).

Configuration keys share one hash tag so a Lua script can touch a document, its
indexes and its uniqueness claim atomically, also on Redis Cluster: the data is
small (a few KiB per number) and reads are served by each worker's cache.
"""

from __future__ import annotations

import hashlib

PREFIX = "router"
CONFIG_TAG = "{router}"  # hash tag: all configuration keys live in one cluster slot

INVALIDATION_CHANNEL = f"{PREFIX}:invalidate"


def doc(kind: str, doc_id: str) -> str:
    """String: the JSON document."""
    return f"{CONFIG_TAG}:{kind}:doc:{doc_id}"


def created_index(kind: str, org_id: str) -> str:
    """Sorted set: ids of an org scored by createdAt (epoch microseconds)."""
    return f"{CONFIG_TAG}:{kind}:by-created:{org_id}"


def updated_index(kind: str, org_id: str) -> str:
    """Sorted set: ids of an org scored by updatedAt (epoch microseconds)."""
    return f"{CONFIG_TAG}:{kind}:by-updated:{org_id}"


def search_index(kind: str, org_id: str) -> str:
    """Hash: id -> lower-cased searchable text of the document."""
    return f"{CONFIG_TAG}:{kind}:search:{org_id}"


def claims() -> str:
    """Hash: unique key -> owning document id (phone numbers' lookup keys)."""
    return f"{CONFIG_TAG}:claims"


def claim_of(kind: str) -> str:
    """Hash: document id -> the unique key it claims."""
    return f"{CONFIG_TAG}:{kind}:claim-of"


def script_keys(kind: str, org_id: str, doc_id: str) -> list[str]:
    """KEYS of the write scripts below, in their order."""
    return [
        doc(kind, doc_id),
        created_index(kind, org_id),
        updated_index(kind, org_id),
        search_index(kind, org_id),
        claims(),
        claim_of(kind),
    ]


# The write scripts: each checks, claims, stores, indexes and PUBLISHes atomically, so an
# acknowledged write has always published its invalidation. KEYS: `script_keys(...)`.
# Lua: builds the invalidation message (the wire format other workers parse).
# Writes carry a deadline (epoch milliseconds): the client stops waiting for an answer at
# its socket timeout and tells the API caller the write was not applied, so a script that
# only runs later (Redis frozen, then resumed, with the command still queued) must not
# apply it. The deadline is set well before the timeout (`WRITE_DEADLINE_MARGIN_SECONDS`):
# a script that runs in time has its answer back before the client gives up. Redis's clock
# is compared with router's: hosts must agree within that margin (NTP does).
WRITE_DEADLINE_MARGIN_SECONDS = 0.5

_LUA_MESSAGE = """
local function late(deadline_ms)
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline_ms)
end

local function message(kind, id, org, changed)
  local parts = {}
  for _, key in ipairs(changed) do parts[#parts + 1] = cjson.encode(key) end
  return '{"kind":' .. cjson.encode(kind) .. ',"id":' .. cjson.encode(id)
    .. ',"orgId":' .. cjson.encode(org) .. ',"keys":[' .. table.concat(parts, ',') .. ']}'
end
"""

# KEYS: doc, created index, updated index, search hash, claims, claim-of.
# ARGV: channel, kind, org id, id, doc JSON, created score, updated score, search text, key|"",
# deadline (epoch ms). Each write script answers {'late'} and changes nothing past it.
CREATE_SCRIPT = (
    _LUA_MESSAGE
    + """
if late(ARGV[10]) then return {'late'} end
local id, key = ARGV[4], ARGV[9]
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local changed = {}
if key ~= '' then
  local owner = redis.call('HGET', KEYS[5], key)
  if owner then return {'conflict', owner} end
  redis.call('HSET', KEYS[5], key, id)
  redis.call('HSET', KEYS[6], id, key)
  changed[1] = key
end
redis.call('SET', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], id)
redis.call('ZADD', KEYS[3], ARGV[7], id)
redis.call('HSET', KEYS[4], id, ARGV[8])
redis.call('PUBLISH', ARGV[1], message(ARGV[2], id, ARGV[3], changed))
return {'ok'}
"""
)

# Same KEYS and ARGV as create. The old key is read from claim-of, never from the caller.
REPLACE_SCRIPT = (
    _LUA_MESSAGE
    + """
if late(ARGV[10]) then return {'late'} end
local id, new = ARGV[4], ARGV[9]
if not redis.call('ZSCORE', KEYS[2], id) then return {'notfound'} end
if new ~= '' then
  local owner = redis.call('HGET', KEYS[5], new)
  if owner and owner ~= id then return {'conflict', owner} end
end
local old = redis.call('HGET', KEYS[6], id)
local changed = {}
if old then
  if old ~= new and redis.call('HGET', KEYS[5], old) == id then redis.call('HDEL', KEYS[5], old) end
  changed[#changed + 1] = old
end
if new ~= '' then
  redis.call('HSET', KEYS[5], new, id)
  redis.call('HSET', KEYS[6], id, new)
  if new ~= old then changed[#changed + 1] = new end
else
  redis.call('HDEL', KEYS[6], id)
end
redis.call('SET', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], id)
redis.call('ZADD', KEYS[3], ARGV[7], id)
redis.call('HSET', KEYS[4], id, ARGV[8])
redis.call('PUBLISH', ARGV[1], message(ARGV[2], id, ARGV[3], changed))
return {'ok', old or ''}
"""
)

# Same KEYS as create. ARGV: channel, kind, org id, id, deadline (epoch ms). Returns
# {removed JSON, old key}, nil when there was nothing to remove, or {'late'}.
DELETE_SCRIPT = (
    _LUA_MESSAGE
    + """
if late(ARGV[5]) then return {'late'} end
local id = ARGV[4]
if not redis.call('ZSCORE', KEYS[2], id) then return false end
local body = redis.call('GET', KEYS[1])
local old = redis.call('HGET', KEYS[6], id)
local changed = {}
if old then
  if redis.call('HGET', KEYS[5], old) == id then redis.call('HDEL', KEYS[5], old) end
  redis.call('HDEL', KEYS[6], id)
  changed[1] = old
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
redis.call('PUBLISH', ARGV[1], message(ARGV[2], id, ARGV[3], changed))
return {body, old or ''}
"""
)


# --- call records: high volume, short-lived, spread over cluster slots (no shared tag) ---

CALL_LOCK_EXTRA_MS = 1_000  # a decision lock outlives its budget a little: render and write


def call_tag(call_id: str) -> str:
    """The hash tag of a call's keys: a digest of the call id, not the id itself, which
    may hold braces (a SIP Call-ID may) and would then split the call's keys across
    cluster slots."""
    return hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def org_scope(org_id: str) -> str:
    """A fixed-length tag of an org, for keys of call ids (which callers choose): with it
    last, no call id of one org can spell another org's key."""
    return hashlib.sha256(org_id.encode()).hexdigest()[:20]


def call_record(org_id: str, call_id: str) -> str:
    """String: the call's status record JSON (its decision is `call_decision`), with a TTL.
    Scoped to the org: a call id one org's webhook names never reaches another's record."""
    return f"{PREFIX}:call:{{{call_tag(call_id)}}}:{org_scope(org_id)}:record"


def call_decision(org_id: str, call_id: str) -> str:
    """String: the record as its decision was first written (SET NX), with a TTL. Kept apart
    from the status record: the status script re-encodes that one with Lua's cjson, which
    would mangle the customer's transient config (`[]` becomes `{}`, digits are lost)."""
    return f"{PREFIX}:call:{{{call_tag(call_id)}}}:{org_scope(org_id)}:decision"


def call_runtimes(org_id: str, call_id: str) -> str:
    """Set: what runtimes did with the call (`<runtime>:started`, `<runtime>:failed`)."""
    return f"{PREFIX}:call:{{{call_tag(call_id)}}}:{org_scope(org_id)}:runtimes"


def call_lock(org_id: str, call_id: str) -> str:
    """String: the worker deciding this org's call right now (SET NX PX)."""
    return f"{PREFIX}:call:{{{call_tag(call_id)}}}:{org_scope(org_id)}:lock"


# Update a call record's status unless it would move a final status back, or an older
# event (lower sequence) would overwrite a newer one; a record of another number is left
# alone (-1). KEYS: status record, decision.
# Returns {1 when the status changed (or is the call's first), the status record, the
# decision record untouched}.
STATUS_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local base = cjson.decode(ARGV[2])
local record
if raw then
  record = cjson.decode(raw)
  -- A record of another number: the event is ignored (returned as -1).
  if record['phoneNumberId'] ~= base['phoneNumberId'] then return {-1, '', false} end
else
  record = base
end
local event = cjson.decode(ARGV[1])
local function num(value, default)
  if value == nil or value == cjson.null then return default end
  return tonumber(value)
end
local changed = 0
local final = record['final'] == true
local seq = num(record['statusSequence'], -1)
local event_seq = num(event['sequence'], -1)
if (not final) and (event_seq < 0 or event_seq >= seq) then
  if record['status'] ~= event['status'] then changed = 1 end
  record['status'] = event['status']
  record['final'] = event['final']
  if event['sequence'] ~= cjson.null and event['sequence'] ~= nil then
    record['statusSequence'] = event['sequence']
  end
end
if event['durationSeconds'] ~= cjson.null and event['durationSeconds'] ~= nil then
  record['durationSeconds'] = event['durationSeconds']
end
record['updatedAt'] = event['updatedAt']
-- The first status event of a call is news even when it is the initial 'ringing'.
if not raw then changed = 1 end
if raw then
  redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
else
  redis.call('SET', KEYS[1], cjson.encode(record), 'EX', ARGV[3])
end
return {changed, cjson.encode(record), redis.call('GET', KEYS[2])}
"""


# Delete a decision lock only if this worker still holds it (its token).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# One page of an org's listing by rank, not by `LIMIT offset` (which walks every skipped
# entry): the ranks bounding the createdAt range come from ZCOUNT, O(log N) each, so
# page 100 costs what page 1 does. Bounds are inclusive whole microseconds or +-inf.
# KEYS: created index. ARGV: lo, hi, offset, limit, descending ("1"/"0").
# Returns {total in range, ids of the page}.
LIST_SCRIPT = """
local key, lo, hi = KEYS[1], ARGV[1], ARGV[2]
local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local total = redis.call('ZCOUNT', key, lo, hi)
if limit <= 0 or offset >= total then
  return {total, {}}
end
local last = offset + math.min(limit, total - offset) - 1
if ARGV[5] == '1' then
  local skip = 0
  if hi ~= '+inf' then skip = redis.call('ZCOUNT', key, '(' .. hi, '+inf') end
  return {total, redis.call('ZREVRANGE', key, skip + offset, skip + last)}
end
local skip = 0
if lo ~= '-inf' then skip = redis.call('ZCOUNT', key, '-inf', '(' .. lo) end
return {total, redis.call('ZRANGE', key, skip + offset, skip + last)}
"""


# --- runtime health (router/runtimes/health.py) ---

HEALTH_KEY = f"{PREFIX}:runtime-health"

# A runtime's counts after one report. KEYS: the health hash. ARGV: name, 1 (taken) or 0
# (not taken), failures to mark down, seconds down. Returns the runtime's new state JSON.
HEALTH_REPORT_SCRIPT = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local state = {failures = 0, downUntil = 0}
if raw then state = cjson.decode(raw) end
if ARGV[2] == '1' then
  state.failures = 0
  state.downUntil = 0
else
  state.failures = state.failures + 1
  if state.failures >= tonumber(ARGV[3]) and state.downUntil <= now_s then
    state.downUntil = now_s + tonumber(ARGV[4])
  end
end
local encoded = cjson.encode(state)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return encoded
"""


# --- concurrency caps (router/pipeline/admission.py) ---


def number_slots(org_id: str, number_id: str) -> str:
    """Sorted set: call ids holding a slot of the number, scored by expiry. Tagged by the
    org, so a script can take a number's slot and its org's together on Redis Cluster."""
    return f"{PREFIX}:slots:{{{org_scope(org_id)}}}:number:{number_id}"


def org_slots(org_id: str) -> str:
    """Sorted set: call ids holding a slot of the org."""
    return f"{PREFIX}:slots:{{{org_scope(org_id)}}}:org"


# KEYS: the number's slots, the org's slots (either may be unused: its cap is 0).
# ARGV: call id, number cap, org cap, slot seconds. Returns {verdict, number in use, org in
# use}: verdict 0 admitted (or already holding its slots), 1 number full, 2 org full.
SLOTS_ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local number_cap, org_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local held = false
for i, cap in ipairs({number_cap, org_cap}) do
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZSCORE', KEYS[i], ARGV[1]) then held = true end
  end
end
local in_number = number_cap > 0 and redis.call('ZCARD', KEYS[1]) or 0
local in_org = org_cap > 0 and redis.call('ZCARD', KEYS[2]) or 0
if not held then
  if number_cap > 0 and in_number >= number_cap then return {1, in_number, in_org} end
  if org_cap > 0 and in_org >= org_cap then return {2, in_number, in_org} end
end
for i, cap in ipairs({number_cap, org_cap}) do
  if cap > 0 then
    redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
    redis.call('EXPIRE', KEYS[i], ttl + 60)
  end
end
return {0, number_cap > 0 and redis.call('ZCARD', KEYS[1]) or 0,
        org_cap > 0 and redis.call('ZCARD', KEYS[2]) or 0}
"""


# KEYS: the number's slots, the org's. ARGV: call id. Returns what each still holds.
SLOTS_RELEASE_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""
