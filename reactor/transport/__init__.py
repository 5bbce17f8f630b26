"""The transport layer: the one owner of every socket's life.

Between `reactor.core` and the surfaces (`reactor.reqrep`, `reactor.client`,
`reactor.socketserver`, `reactor.easy`, `reactor.streams`).  Surfaces are
protocols on this layer; they never call ``accept``/``recv``/``send``/
``close`` on a socket themselves, so a limit, a fault fix or TLS is written
once here and every surface has it.

Modules:

- `reactor.transport.table`: the connection table's rows, their states and
  the one function that changes a state.
- `reactor.transport.base`: what every transport shares (limits, deadlines,
  water marks, delivering ``connection_lost`` once, reporting protocol errors).
- `reactor.transport.stream`: `StreamTransport`, a row that is also an
  asyncio-style transport (bounded reads, try-send-then-buffer with water
  marks, half-close, deadlines, unregister-then-close).
- `reactor.transport.listener`: `Listener` (bind, listen, the bounded accept
  loop with the read-at-accept fast path, ``max_connections``, and
  `AcceptExhaustion`, the ``EMFILE``/``ENFILE`` policy that
  `reactor.socketserver` shares).
- `reactor.transport.connect`: non-blocking connect with a timeout.
- `reactor.transport.tls`: TLS as a layer on any stream transport
  (`TLSProtocol` below the application, `TLSTransport` above it; MemoryBIO,
  handshake timeout, ``close_notify``).
- `reactor.transport.proxy`: the PROXY protocol (v1/v2) as an opt-in layer
  under the application, for servers behind a load balancer.
- `reactor.transport.datagram`: `DatagramEndpoint`.
- `reactor.transport.memory`: an in-memory transport pair for tests.
- `reactor.transport.threads`: the registry of reactor threads (the one
  answer to which thread drives a reactor) and the one bounded worker pool.
- `reactor.transport.executor`: work off the reactor's thread in that pool:
  `Reactor.run_in_executor` and `Reactor.getaddrinfo` (names resolved off the loop).
- `reactor.transport.errors`: the one error policy for user code.
"""
