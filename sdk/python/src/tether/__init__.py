"""Python client for a Tether hub.

    import tether
    with tether.connect() as hub:          # the file tetherctl uses
        for c in hub.clusters():
            print(c.name, c.status)

`hub.api` is the generated stub of tether.v1.HubApiService (every RPC); the helpers cover
the common paths. Messages are in `tether.v1.api_pb2`.
"""

from tether.client import ConfigError, Hub, NotAvailable, connect, load_config

__all__ = ["ConfigError", "Hub", "NotAvailable", "connect", "load_config"]
