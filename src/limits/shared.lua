-- llm-gateway shared limits, script version 1 (the version is in every key name, so a rolling
-- upgrade to an incompatible layout uses new keys instead of misreading old ones).
--
-- One call admits (ARGV[1] == "admit") or settles (ARGV[1] == "settle") one request against
-- every scope it has (its key and its project), atomically, on Redis server time.
--
-- KEYS: four per scope, in order: rpm (GCRA TAT, µs), tpm (GCRA TAT, µs), par (ZSET of
-- in-flight request ids scored by lease expiry, µs), bud (HASH spent/reserved/alerted/
-- exhausted of the budget period the client named).
--
-- admit  ARGV: "admit", n, id, tokens, cost, lease_us, then per scope 5 values:
--              rpm, tpm, par, budget_limit, budget_ttl_ms   (-1 = no such limit / no expiry)
--   returns {1, per scope: rpm_remaining, rpm_reset_ms, tpm_remaining, tpm_reset_ms}
--        or {0, scope_index, dimension, limit, remaining, retry_after_ms (-1 = never)}
-- settle ARGV: "settle", n, id, reserved_tokens, actual_tokens, reserved_cost, actual_cost,
--              then per scope 4 values: tpm, budget_limit, alert_micros, budget_ttl_ms
--   returns per scope: {spent, crossed_threshold (0/1), crossed_limit (0/1)}
-- seed   ARGV: "seed", spent, ttl_ms on KEYS[1] (a bud key): sets spent when absent.
--   returns 1 when it set it.

local WINDOW = 60000000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]

local function gcra_level(key, limit)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local T = WINDOW / limit
  local remaining = math.floor((WINDOW - (tat - now)) / T + 1e-9)
  if remaining < 0 then remaining = 0 end
  return tat, T, remaining
end

if op == 'seed' then
  local set = redis.call('HSETNX', KEYS[1], 'spent', ARGV[2])
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  return set
end

local n = tonumber(ARGV[2])
local id = ARGV[3]

-- peek ARGV: "peek", n, "", then per scope 3 values: rpm, tpm, par (-1 = no such limit).
--   returns per scope: {rpm_remaining, rpm_reset_ms, tpm_remaining, tpm_reset_ms, in_flight,
--   spent, reserved}; writes nothing.
if op == 'peek' then
  local out = {}
  for i = 0, n - 1 do
    local k = i * 4
    local a = 4 + i * 3
    local row = {}
    for slot, limit in ipairs({ tonumber(ARGV[a]), tonumber(ARGV[a + 1]) }) do
      if limit > 0 then
        local tat, _, remaining = gcra_level(KEYS[k + slot], limit)
        table.insert(row, remaining)
        table.insert(row, math.ceil((tat - now) / 1000))
      elseif limit == 0 then
        table.insert(row, 0)
        table.insert(row, 0)
      else
        table.insert(row, -1)
        table.insert(row, -1)
      end
    end
    table.insert(row, redis.call('ZCOUNT', KEYS[k + 3], now, '+inf'))
    local v = redis.call('HMGET', KEYS[k + 4], 'spent', 'reserved')
    table.insert(row, tonumber(v[1] or '0'))
    table.insert(row, tonumber(v[2] or '0'))
    table.insert(out, row)
  end
  return out
end

if op == 'admit' then
  local tokens = tonumber(ARGV[4])
  local cost = tonumber(ARGV[5])
  local lease = tonumber(ARGV[6])
  local plan = {}
  -- Check every scope first; nothing is written unless all admit.
  for i = 0, n - 1 do
    local k = i * 4
    local a = 7 + i * 5
    local rpm, tpm, par, bud, ttl =
      tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local p = { par = par, bud = bud, ttl = ttl }
    if par >= 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
      if redis.call('ZCARD', KEYS[k + 3]) >= par then
        return { 0, i, 'parallel', par, 0, 1000 }
      end
    end
    -- GCRA: a bucket of `limit` per minute; `units` (1 request, or the tokens) take units * T of it.
    for _, b in ipairs({ { 'rpm', rpm, 1, 1 }, { 'tpm', tpm, tokens, 2 } }) do
      local name, limit, units, slot = b[1], b[2], b[3], b[4]
      if limit >= 0 then
        local tat, T, remaining = gcra_level(KEYS[k + slot], limit)
        local new = tat + units * T
        if new - now > WINDOW then
          return { 0, i, name, limit, remaining, math.ceil((new - now - WINDOW) / 1000) }
        end
        p[name] = { new = new, T = T }
      end
    end
    if bud >= 0 then
      local v = redis.call('HMGET', KEYS[k + 4], 'spent', 'reserved')
      local spent = tonumber(v[1] or '0')
      local reserved = tonumber(v[2] or '0')
      if spent + reserved + cost > bud then
        local retry = 1000
        if spent + cost > bud then retry = ttl end
        local left = bud - spent - reserved
        if left < 0 then left = 0 end
        return { 0, i, 'budget', bud, left, retry }
      end
    end
    plan[i] = p
  end
  local out = { 1 }
  for i = 0, n - 1 do
    local k = i * 4
    local p = plan[i]
    if p.par >= 0 then
      redis.call('ZADD', KEYS[k + 3], now + lease, id)
      redis.call('PEXPIRE', KEYS[k + 3], math.ceil(lease / 1000) + 1000)
    end
    for slot, name in ipairs({ 'rpm', 'tpm' }) do
      local g = p[name]
      if g then
        redis.call('SET', KEYS[k + slot], string.format('%.0f', g.new), 'PX', math.ceil((g.new - now) / 1000) + 1000)
        table.insert(out, math.floor((WINDOW - (g.new - now)) / g.T + 1e-9))
        table.insert(out, math.ceil((g.new - now) / 1000))
      else
        table.insert(out, -1)
        table.insert(out, -1)
      end
    end
    if p.bud >= 0 then
      redis.call('HINCRBY', KEYS[k + 4], 'reserved', cost)
      if p.ttl > 0 then redis.call('PEXPIRE', KEYS[k + 4], p.ttl + 86400000) end
    end
  end
  return out
end

if op == 'settle' then
  local reserved_tokens = tonumber(ARGV[4])
  local actual_tokens = tonumber(ARGV[5])
  local reserved_cost = tonumber(ARGV[6])
  local actual_cost = tonumber(ARGV[7])
  local out = {}
  for i = 0, n - 1 do
    local k = i * 4
    local a = 8 + i * 4
    local tpm, bud, alert, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    redis.call('ZREM', KEYS[k + 3], id)
    if tpm > 0 and actual_tokens ~= reserved_tokens then
      local tat = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
      if tat < now then tat = now end
      tat = tat + (actual_tokens - reserved_tokens) * (WINDOW / tpm)
      if tat <= now then
        redis.call('DEL', KEYS[k + 2])
      else
        redis.call('SET', KEYS[k + 2], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
      end
    end
    local spent, crossed_alert, crossed_limit = 0, 0, 0
    if bud >= 0 then
      -- `0 - x`, not `-x`: Lua writes -0 as "-0", which HINCRBY refuses as not an integer
      -- (a settlement of a zero-cost reservation would fail).
      local r = redis.call('HINCRBY', KEYS[k + 4], 'reserved', 0 - reserved_cost)
      if r < 0 then redis.call('HSET', KEYS[k + 4], 'reserved', 0) end
      spent = redis.call('HINCRBY', KEYS[k + 4], 'spent', actual_cost)
      if ttl > 0 then redis.call('PEXPIRE', KEYS[k + 4], ttl + 86400000) end
      if alert >= 0 and spent >= alert then
        crossed_alert = redis.call('HSETNX', KEYS[k + 4], 'alerted', 1)
      end
      if spent >= bud then
        crossed_limit = redis.call('HSETNX', KEYS[k + 4], 'exhausted', 1)
      end
    end
    table.insert(out, { spent, crossed_alert, crossed_limit })
  end
  return out
end

return redis.error_reply('llm-gateway limits script: unknown op ' .. tostring(op))
