-- reserve.lua: check every limit of one API key and, only if all pass, charge them all. Atomic in Redis.
-- Same rules as MemoryLimitStore.reserve_nowait (limits/memory.py); docs/limits.md explains them.
--
-- KEYS[1]  base key "<prefix>:{<key name>}"; every key below shares its hash tag (one cluster slot):
--   <base>:log    ZSET  reservation id -> admitted at (unix ms)        sliding 60 s log (requests, tokens)
--   <base>:amt    HASH  reservation id -> tokens charged, "_sum" -> total of the log's tokens
--   <base>:conc   ZSET  reservation id -> lease expiry (unix ms)       in flight; the reconcile marker
--   <base>:d:<n>  INT   tokens charged on UTC day n                    daily budget
--   <base>:m:<ym> INT   tokens charged in UTC month yyyymm             monthly budget
-- ARGV: id, tokens, now_ms (-1: the server's TIME), rpm, tpm, max_concurrent, per_day, per_month
--       (-1: no such limit), window_ms, lease_ms
-- Returns {1, now_ms, day|-1, month|-1, requests_before, window_tokens_after}
--      or {0, limit_code, limit, used, retry_ms|-1, requests, window_tokens, reset_ms}
--   limit_code: 1 requests_per_minute, 2 tokens_per_minute, 3 max_concurrent, 4 tokens_per_day,
--   5 tokens_per_month; retry_ms -1: the request alone exceeds the limit.

local base = KEYS[1]
local id = ARGV[1]
local need = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  -- The server's clock: every gateway replica sees the same windows whatever its own clock says.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rpm, tpm, cc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local dl, ml = tonumber(ARGV[7]), tonumber(ARGV[8])
local window, lease = tonumber(ARGV[9]), tonumber(ARGV[10])
local DAY = 86400000
local BATCH = 500 -- unpack() has a stack limit: touch large lists in slices

local log, amt, conc = base .. ':log', base .. ':amt', base .. ':conc'
local use_log = rpm >= 0 or tpm >= 0

-- 1. Expire what left the windows.
local count, used = 0, 0
if use_log then
  local cutoff = now - window
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #old > 0 then
    local freed = 0
    for i = 1, #old, BATCH do
      local slice = {unpack(old, i, math.min(i + BATCH - 1, #old))}
      local vals = redis.call('HMGET', amt, unpack(slice))
      for j = 1, #vals do freed = freed + (tonumber(vals[j]) or 0) end
      redis.call('HDEL', amt, unpack(slice))
    end
    if freed ~= 0 then redis.call('HINCRBY', amt, '_sum', -freed) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  end
  count = redis.call('ZCARD', log)
  used = tonumber(redis.call('HGET', amt, '_sum') or '0')
end
redis.call('ZREMRANGEBYSCORE', conc, '-inf', now) -- leases of reservations never reconciled
local inflight = redis.call('ZCARD', conc)

-- 2. Budgets: UTC day and calendar month (civil-from-days, H. Hinnant's algorithm).
local day = math.floor(now / DAY)
local dkey, mkey, dused, mused, month, next_month = nil, nil, 0, 0, -1, 0
if dl >= 0 then
  dkey = base .. ':d:' .. day
  dused = tonumber(redis.call('GET', dkey) or '0')
end
if ml >= 0 then
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  month = y * 100 + m
  local ny, nm = y, m + 1 -- days-from-civil of the 1st of the next month
  if nm == 13 then ny, nm = y + 1, 1 end
  if nm <= 2 then ny = ny - 1 end
  local era2 = math.floor(ny / 400)
  local yoe2 = ny - era2 * 400
  local mp2 = nm > 2 and nm - 3 or nm + 9
  local doe2 = yoe2 * 365 + math.floor(yoe2 / 4) - math.floor(yoe2 / 100) + math.floor((153 * mp2 + 2) / 5)
  next_month = (era2 * 146097 + doe2 - 719468) * DAY
  mkey = base .. ':m:' .. month
  mused = tonumber(redis.call('GET', mkey) or '0')
end

-- 3. Every failing limit: {code, limit, used, retry_ms (-1: never fits)}.
local fails = {}
if rpm >= 0 and count + 1 > rpm then
  local e = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
  fails[#fails + 1] = {1, rpm, count, tonumber(e[2]) + window - now}
end
if tpm >= 0 then
  if need > tpm then
    fails[#fails + 1] = {2, tpm, used, -1}
  elseif used + need > tpm then
    -- Retry when enough of the oldest reservations leave the window to make room.
    local excess, freed, at, start, done = used + need - tpm, 0, now, 0, false
    while not done do
      local e = redis.call('ZRANGE', log, start, start + BATCH - 1, 'WITHSCORES')
      if #e == 0 then break end
      local ids = {}
      for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
      local vals = redis.call('HMGET', amt, unpack(ids))
      for i = 1, #ids do
        freed = freed + (tonumber(vals[i]) or 0)
        if freed >= excess then
          at, done = tonumber(e[2 * i]), true
          break
        end
      end
      start = start + BATCH
    end
    fails[#fails + 1] = {2, tpm, used, at + window - now}
  end
end
if cc >= 0 and inflight + 1 > cc then
  fails[#fails + 1] = {3, cc, inflight, 1000}
end
if dl >= 0 then
  if need > dl then
    fails[#fails + 1] = {4, dl, dused, -1}
  elseif dused + need > dl then
    fails[#fails + 1] = {4, dl, dused, (day + 1) * DAY - now}
  end
end
if ml >= 0 then
  if need > ml then
    fails[#fails + 1] = {5, ml, mused, -1}
  elseif mused + need > ml then
    fails[#fails + 1] = {5, ml, mused, next_month - now}
  end
end

if #fails > 0 then
  -- Report one that no retry can fix, else the one that frees last (the first on ties).
  local worst = nil
  for _, f in ipairs(fails) do
    if f[4] < 0 then
      worst = f
      break
    end
  end
  if worst == nil then
    worst = fails[1]
    for i = 2, #fails do
      if fails[i][4] > worst[4] then worst = fails[i] end
    end
  end
  local reset = 0
  if count > 0 then
    local e = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    reset = tonumber(e[2]) + window - now
  end
  return {0, worst[1], worst[2], worst[3], worst[4], count, used, reset}
end

-- 4. Admit: charge every window with a limit. Keys expire when nothing in them can matter any more.
if use_log then
  redis.call('ZADD', log, now, id)
  redis.call('PEXPIRE', log, window)
  if tpm >= 0 then
    redis.call('HSET', amt, id, need)
    used = redis.call('HINCRBY', amt, '_sum', need)
    redis.call('PEXPIRE', amt, window)
  end
end
redis.call('ZADD', conc, now + lease, id)
redis.call('PEXPIRE', conc, lease)
if dl >= 0 then
  redis.call('INCRBY', dkey, need)
  redis.call('PEXPIRE', dkey, (day + 2) * DAY - now) -- kept a day longer: late refunds still land
else
  day = -1
end
if ml >= 0 then
  redis.call('INCRBY', mkey, need)
  redis.call('PEXPIRE', mkey, next_month + DAY - now)
end
return {1, now, day, month, count, used}
