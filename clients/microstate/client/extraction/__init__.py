"""Incremental extraction of a slice from a monolith (issue 17).

`legacy.LegacyAdapter` puts the monolith's side of a slice behind the slice's domain operations (adapters:
`sql.SqlAdapter`, `redis_hash.RedisHashAdapter`; `demo` is the demo monolith); `router.Router` sends each
call to legacy, the microstate or both, by the phase a flag in the flags microstate holds.
"""
