"""Shared fixtures. Real parts only: a real redis-server, a real Mongo-wire server, real gRPC servers."""

from tests.support.mongo_server import mongo_server  # noqa: F401  (session fixture)
from tests.support.redis_cluster import redis_cluster  # noqa: F401  (session fixture)
from tests.support.redis_server import redis_server  # noqa: F401  (session fixture)
