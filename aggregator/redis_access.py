"""Start-up check that the Redis user in ``--redis-url`` may do what the aggregator does.

Redis ACLs are checked when a command is *queued* inside MULTI, so the check sends one
command of each kind the aggregator uses, on the key and channel names it uses, inside a
MULTI that it then DISCARDs: nothing is executed, nothing is written, and every missing
permission is reported at once, by command and key, with the Redis error. A wrong password
is reported the same way. An unreachable Redis is not a configuration error (the
aggregator starts and waits for it): the check is then skipped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

PROBE_NODE = "kubeattention-access-check"


class RedisAccessError(Exception):
    """The Redis credentials or ACL do not allow the aggregator's work; the message says which."""


@dataclass(frozen=True)
class Probe:
    what: str
    command: tuple[str, ...]


def probes(prefix: str) -> list[Probe]:
    node = f"{prefix}node:{{{PROBE_NODE}}}"
    history = f"{prefix}history:{{{PROBE_NODE}}}"
    nodes, updates, decisions = f"{prefix}nodes", f"{prefix}updates", f"{prefix}decisions"
    return [
        Probe(f"write node hashes ({node})", ("HSET", node, "probe", "1")),
        Probe(f"read node hashes ({node})", ("HGETALL", node)),
        Probe(f"replace node hashes ({node})", ("DEL", node)),
        Probe(f"expire node hashes ({node})", ("EXPIRE", node, "1")),
        Probe(f"update the node index ({nodes})", ("ZADD", nodes, "XX", "0", PROBE_NODE)),
        Probe(f"read the node index ({nodes})", ("ZRANGE", nodes, "0", "0")),
        Probe(f"prune the node index ({nodes})", ("ZREMRANGEBYSCORE", nodes, "-inf", "-inf")),
        Probe(f"append history ({history})", ("XADD", history, "*", "probe", "1")),
        Probe(f"read history ({history})", ("XREVRANGE", history, "+", "-", "COUNT", "1")),
        Probe(f"record extender decisions ({decisions})", ("XADD", decisions, "*", "probe", "1")),
        # a push is one script (aggregator/store.py WRITE_LUA): EVALSHA, and SCRIPT LOAD after a restart
        Probe(f"run the push script ({node}, {history})", ("EVALSHA", "0" * 40, "2", node, history)),
        Probe("load the push script (SCRIPT LOAD)", ("SCRIPT", "LOAD", "return 1")),
        Probe(f"publish updates (channel {updates})", ("PUBLISH", updates, "probe")),
        Probe(f"subscribe to updates (channel {updates})", ("SUBSCRIBE", updates)),
    ]


def _who(client: redis.Redis) -> tuple[str, str]:
    kw = client.connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return kw.get("username") or "default", where


def _credentials_error(client, user: str, where: str, err: Exception) -> RedisAccessError:
    if client.connection_pool.connection_kwargs.get("password") is None:  # NOAUTH: none were given
        return RedisAccessError(
            f"Redis at {where} wants credentials ({err}); put them in --redis-url: "
            "redis://USER:PASSWORD@HOST:PORT/DB (a password alone is the 'default' user)"
        )
    return RedisAccessError(
        f"Redis at {where} refused the credentials of user {user!r} in --redis-url: {err} "
        "(redis://USER:PASSWORD@HOST:PORT/DB; a password alone is the 'default' user)"
    )


def check_redis_access(client, prefix: str) -> bool:
    """True when checked and allowed, False when Redis is unreachable or the client is not a
    plain Redis client (Redis Cluster: not checked here). Raises RedisAccessError."""
    if not isinstance(client, redis.Redis):
        log.info("Redis ACL check skipped for %s (checked for a single Redis only)", type(client).__name__)
        return False
    user, where = _who(client)
    try:
        conn = client.connection_pool.get_connection()
    except redis.AuthenticationError as e:
        raise _credentials_error(client, user, where, e) from None
    except redis.ResponseError as e:  # e.g. NOAUTH from a server that wants a password the URL lacks
        raise RedisAccessError(f"Redis at {where} refused user {user!r}: {e}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        log.warning(
            "Redis at %s unreachable at start (%s): credentials and ACL not checked; a permission "
            "problem will show in refused pushes with Redis's NOPERM message",
            where,
            e,
        )
        return False
    missing = []
    try:
        conn.send_command("MULTI")
        conn.read_response()
        for p in probes(prefix):
            conn.send_command(*p.command)
            try:
                conn.read_response()
            except redis.exceptions.NoPermissionError as e:
                missing.append(f"{p.what}: {' '.join(p.command[:2])} -> NOPERM {e}")
        conn.send_command("DISCARD")
        conn.read_response()
    except redis.exceptions.NoPermissionError as e:  # MULTI itself refused
        missing.append(f"transactions: MULTI -> NOPERM {e}")
        conn.disconnect()
    except redis.AuthenticationError as e:
        conn.disconnect()
        raise _credentials_error(client, user, where, e) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        conn.disconnect()
        log.warning("Redis at %s dropped the ACL check (%s); not checked", where, e)
        return False
    except redis.ResponseError as e:
        conn.disconnect()
        raise RedisAccessError(f"Redis at {where}: the ACL check failed for user {user!r}: {e}") from None
    finally:
        client.connection_pool.release(conn)
    if missing:
        raise RedisAccessError(
            f"Redis user {user!r} at {where} lacks permissions the aggregator needs:\n    "
            + "\n    ".join(missing)
            + f"\n  grant them, e.g.: ACL SETUSER {user} ~{prefix}* &{prefix}* +@read +@write +@stream +@pubsub "
            "+@connection +@transaction (keys and channels under the prefix)"
        )
    return True
