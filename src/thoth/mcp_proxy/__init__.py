"""`thoth mcp proxy`: a governing Model Context Protocol proxy any MCP client can use unchanged.

    thoth mcp proxy -- python my_server.py            # stdio: wraps a local server
    thoth mcp proxy --listen 127.0.0.1:8765 --upstream http://127.0.0.1:9000/mcp --token-env T

The parts, each in its own module (docs/mcp.md, "As a proxy"):

- `jsonrpc`: reading one client message (size, JSON, JSON-RPC shape) and the errors it answers;
- `relay`: the protocol layer, transport-agnostic: governs `tools/call`, filters `tools/list`,
  passes everything else through as sent, answers an upstream that dies or hangs;
- `governance`: the ONE module that asks Thoth (policy, step-up, audit events);
- `stdio`, `http`: the transports (a subprocess on pipes; a streamable-HTTP listener and client);
- `config`: the command line and the config file; `cli`: `thoth mcp proxy`.
"""
