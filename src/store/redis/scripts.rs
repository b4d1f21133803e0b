//! The Lua scripts: what must be decided in one place, atomically, with
//! Redis's own clock. redis-rs sends each by `EVALSHA`, loading it when
//! Redis does not know it (after a restart, say).

use redis::Script;

/// `KEYS[1]` is free: take it for `ARGV[2]` ms. Else its value. A
/// transient failure is free to a new claimant (`ARGV[3]` = 0), and shown
/// only to those that were waiting on that exchange.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v and (ARGV[3] == '1' or string.sub(v, 1, 1) ~= 'T') then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Replaces `KEYS[1]` only if it is still this claimant's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
";

/// Logout, atomically: revoke (`KEYS[1]`), drop the session (`KEYS[2]`),
/// tell the other replicas (channel `ARGV[3]`), and forget revocations
/// whose tokens can no longer be presented (`exp` older than now - leeway).
const LOGOUT: &str = r"
redis.replicate_commands()
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[4])))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[2] .. ' ' .. ARGV[1])
return 1
";

/// GCRA: `KEYS[1]` holds the theoretical arrival time (µs, Redis's clock).
/// Returns -1 to admit, else the wait in µs.
const GCRA: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return -1
";

pub(super) struct Scripts {
    pub(super) claim: Script,
    pub(super) release: Script,
    pub(super) logout: Script,
    pub(super) gcra: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            logout: Script::new(LOGOUT),
            gcra: Script::new(GCRA),
        }
    }
}
