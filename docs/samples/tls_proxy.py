"""TLS options and a proxy are arguments of the client; plain ws:// to a remote host is refused."""

import ssl

import cmcsync

client = cmcsync.Client(
    api_key="my-key",
    sslopt={"ca_certs": "/etc/ssl/certs/corporate-root.pem"},  # the proxy's root CA
    proxy="http://proxy.internal:3128",
)

context = ssl.create_default_context()  # or an ssl.SSLContext built any other way
client_with_context = cmcsync.Client(api_key="my-key", sslopt={"context": context})

# refused: start
try:
    cmcsync.Client(api_key="my-key", url="ws://stream.example.com/v1")
except cmcsync.ConfigError as exc:
    print(f"refused ({exc.param}): {exc}")
