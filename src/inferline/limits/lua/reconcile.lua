-- reconcile.lua: end a reservation: free its concurrency slot and charge actual tokens instead of the
-- reserved amount in every window it was charged to. Idempotent: only the call that removes the lease acts.
-- Same rules as MemoryLimitStore.reconcile_nowait; key layout in reserve.lua.
--
-- KEYS[1]  base key "<prefix>:{<key name>}"
-- ARGV: id, reserved tokens, actual tokens (-1: unknown, keep the reservation), day (-1), month (-1)
-- Returns 1 when applied, 0 when already reconciled or the lease expired.

local base = KEYS[1]
local id = ARGV[1]
if redis.call('ZREM', base .. ':conc', id) == 0 then
  return 0
end
local actual = tonumber(ARGV[3])
if actual < 0 then
  return 1
end
local delta = actual - tonumber(ARGV[2])
if delta == 0 then
  return 1
end
local amt = base .. ':amt'
if redis.call('HEXISTS', amt, id) == 1 then -- still inside the minute window
  redis.call('HINCRBY', amt, id, delta)
  redis.call('HINCRBY', amt, '_sum', delta)
end
-- Only touch budget counters that still exist: INCRBY would recreate an expired one without a TTL.
if tonumber(ARGV[4]) >= 0 then
  local dkey = base .. ':d:' .. ARGV[4]
  if redis.call('EXISTS', dkey) == 1 then redis.call('INCRBY', dkey, delta) end
end
if tonumber(ARGV[5]) >= 0 then
  local mkey = base .. ':m:' .. ARGV[5]
  if redis.call('EXISTS', mkey) == 1 then redis.call('INCRBY', mkey, delta) end
end
return 1
