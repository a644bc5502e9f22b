#!/usr/bin/env python3
"""Dump the reference attestix MCP server's tool list (name, description, input and output schemas).

Starts `python -m attestix.main` (the reference package's stdio MCP server) with the
`mcp` client package, calls list_tools, and writes the tools as JSON, sorted by name.

Usage: /path/to/ref-venv/bin/python scripts/dump_reference_mcp_tools.py OUT.json
The Python that runs it must have `attestix` (the reference) and `mcp` installed.
"""

import asyncio
import json
import os
import sys
import tempfile

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def dump(out_path: str) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        # The reference keeps its JSON files under ATTESTIX_DATA_DIR: keep them out of $HOME.
        env = dict(os.environ, ATTESTIX_DATA_DIR=data_dir)
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "attestix.main"], env=env, cwd=data_dir
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                listed = await session.list_tools()
    tools = [
        {
            "name": tool.name,
            "description": tool.description,
            "inputSchema": tool.inputSchema,
            "outputSchema": tool.outputSchema,
        }
        for tool in sorted(listed.tools, key=lambda t: t.name)
    ]
    document = {
        "server": {"name": init.serverInfo.name, "version": init.serverInfo.version},
        "tools": tools,
    }
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
    print(f"{len(tools)} tools written to {out_path}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    asyncio.run(dump(sys.argv[1]))
