#!/usr/bin/env python3
"""Drive an MCP server with the official `mcp` client package, for the Rust tests.

    mcp_drive.py stdio COMMAND [ARG...]   # start COMMAND and speak MCP over its stdio
    mcp_drive.py http URL                 # the streamable HTTP transport at URL

Reads a plan from stdin: a JSON list of tool calls, {"name": ..., "arguments": {...}}.
Runs initialize, list_tools, then each call in order, and prints one JSON document on
stdout: {"server": {...}, "tools": [{name, description, inputSchema}], "results":
[{"isError": bool, "text": str, "structuredContent": ...}]}. The checks are the Rust test's; this only drives.
Exits 3 when the `mcp` package cannot be imported (the test tells it from a failure).
"""

import asyncio
import json
import os
import sys

try:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client
except ImportError as error:  # the Rust test skips, or fails in CI
    print(f"the mcp package is not importable: {error}", file=sys.stderr)
    sys.exit(3)


async def run(session: ClientSession, plan: list) -> dict:
    init = await session.initialize()
    listed = await session.list_tools()
    results = []
    for call in plan:
        result = await session.call_tool(call["name"], call.get("arguments") or {})
        text = "\n".join(block.text for block in result.content if block.type == "text")
        results.append(
            {
                "isError": bool(result.isError),
                "text": text,
                "structuredContent": result.structuredContent,
            }
        )
    return {
        "server": {
            "name": init.serverInfo.name,
            "version": init.serverInfo.version,
            "protocolVersion": str(init.protocolVersion),
        },
        "tools": [
            {
                "name": t.name,
                "description": t.description,
                "inputSchema": t.inputSchema,
                "outputSchema": t.outputSchema,
            }
            for t in listed.tools
        ],
        "results": results,
    }


async def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("stdio", "http"):
        sys.exit(__doc__)
    plan = json.load(sys.stdin)
    if sys.argv[1] == "stdio":
        params = StdioServerParameters(
            command=sys.argv[2], args=sys.argv[3:], env=dict(os.environ)
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                output = await run(session, plan)
    else:
        async with streamable_http_client(sys.argv[2]) as (read, write, _):
            async with ClientSession(read, write) as session:
                output = await run(session, plan)
    json.dump(output, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.run(main())
