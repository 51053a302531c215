"""The microstate kit: what every slice's server shares, so a slice is its contract, model, rules and codecs.

A slice imports from here, never from another slice. Modules: `access` (the calling Principal; UNAUTHENTICATED
and PERMISSION_DENIED errors), `caches` (bounded latest-per-key maps and the decoded-record cache), `limits`
(documented limits: string maps, page sizes, id forms), `locks` (per-key asyncio locks), `paging` (AIP-158
page tokens), `resources` (keyed resources: etag CAS with retry, upserts, expiry per write, not-found, watch),
`wire` (services that answer with ready wire bytes).
"""
